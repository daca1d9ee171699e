// Uppy straight to S3: Uppy v5 Dashboard + @uppy/aws-s3 against tusgate's
// Companion-compatible /s3/ routes (endpoint = this origin, headers carry
// the bearer token), and @uppy/golden-retriever so that a reload resumes:
// Uppy asks the parts S3 has (listParts) and sends only the missing ones.
//
// These packages come from ./package.json (Uppy v5: @uppy/aws-s3 v5 needs
// @uppy/core v5), not from the tus pages' Uppy v6.

import Uppy from "@uppy/core";
import Dashboard from "@uppy/dashboard";
import AwsS3 from "@uppy/aws-s3";
import GoldenRetriever from "@uppy/golden-retriever";
import "@uppy/core/css/style.min.css";
import "@uppy/dashboard/css/style.min.css";
import "../uppy/app.css";

import { Auth, loadConfig } from "../common/auth.js";
import { pushEvent } from "../common/events.js";
import { formatBytes, queryParams } from "../common/format.js";
import { showPageError, watchOnline } from "../common/page.js";
import { partChecksum } from "../common/s3direct.js";

const MiB = 1024 * 1024;

async function main() {
  const cfg = await loadConfig();
  const params = queryParams();
  if (!cfg.directUploads) {
    document.getElementById("direct-off").hidden = false;
    return;
  }
  const auth = new Auth(cfg, { ttl: params.ttl });
  window.tusgate = { cfg, auth, params };
  watchOnline();
  await auth.init();

  // golden-retriever keeps its state under the Uppy ID: one per user.
  const uppyID = `tusgate-s3-${(auth.userName || "anonymous").replace(/[^A-Za-z0-9_-]/g, "_")}`;
  const uppy = new Uppy({
    id: uppyID,
    autoProceed: true,
    restrictions: { maxFileSize: cfg.maxSize > 0 ? cfg.maxSize : null },
  });
  window.tusgate.uppy = uppy;

  uppy.use(Dashboard, {
    inline: true,
    target: "#uppy",
    width: "100%",
    height: 460,
    showProgressDetails: true,
    proudlyDisplayPoweredByUppy: false,
    doneButtonHandler: null,
    note:
      `straight to S3, ${params.parallel} at a time` +
      (cfg.maxSize > 0 ? ` · up to ${formatBytes(cfg.maxSize)} each` : "") +
      " · after a reload, add the same file again to resume",
  });
  uppy.use(GoldenRetriever, { serviceWorker: false });

  // Every request to /s3/ carries a fresh token: the plugin reads its
  // headers at each request, so they are replaced whenever the token is
  // renewed (Auth renews it a little before it expires).
  const authHeaders = async () => {
    const token = await auth.getToken();
    return token ? { Authorization: `Bearer ${token}` } : {};
  };
  uppy.use(AwsS3, {
    id: "AwsS3",
    endpoint: location.origin,
    headers: await authHeaders(),
    limit: params.parallel,
    shouldUseMultipart: (file) => file.size > params.multipartAbove,
    // Parts of at least params.partSize, within S3's 10,000 parts.
    getChunkSize: (file) => Math.max(params.partSize, Math.ceil(file.size / 10000)),
    // tusgate's routes take the part's size and SHA-256, and sign exactly
    // that Content-Length and x-amz-checksum-sha256 (signPart and
    // getUploadParameters below are the plugin's own requests with these
    // added): S3 stores no part that did not arrive whole.
    signPart: async (file, { uploadId, key, partNumber, body, signal }) => {
      const sum = await partChecksum(body);
      return api(`/s3/multipart/${encodeURIComponent(uploadId)}/${partNumber}?key=${encodeURIComponent(key)}&size=${body.size}${sum ? `&sha256=${encodeURIComponent(sum)}` : ""}`, signal);
    },
    // The plugin's own DELETE, answered before the page reports the cancel.
    abortMultipartUpload: async (file, { key, uploadId, signal }) => {
      let status = null;
      try {
        await api(`/s3/multipart/${encodeURIComponent(uploadId)}?key=${encodeURIComponent(key)}`, signal, "DELETE");
        status = 200;
      } catch (err) {
        status = err.status ?? null;
        throw err;
      } finally {
        event(file, "cancelled", { status });
      }
    },
    getUploadParameters: async (file, { signal } = {}) => {
      const q = new URLSearchParams({ filename: file.name, type: file.type || "application/octet-stream", size: String(file.size) });
      const params = await api(`/s3/params?${q}`, signal);
      info(file).key = params.key;
      return params;
    },
  });
  const plugin = uppy.getPlugin("AwsS3");
  let current = plugin.opts.headers.Authorization;
  const renew = async () => {
    try {
      const headers = await authHeaders();
      if (headers.Authorization !== current) {
        current = headers.Authorization;
        plugin.setOptions({ headers });
      }
    } catch (err) {
      console.warn("tusgate: token renewal failed:", err.message);
    }
  };
  // Auth renews the token a little before it expires; the plugin gets the
  // new one within a second.
  setInterval(renew, 1000);

  async function api(path, signal, method = "GET") {
    for (let attempt = 0; ; attempt++) {
      const res = await fetch(path, { method, headers: await authHeaders(), signal });
      if (res.status === 401 && attempt === 0) {
        auth.invalidate();
        await renew();
        continue;
      }
      const body = await res.json().catch(() => ({}));
      if (!res.ok) throw Object.assign(new Error(`${res.status} ${body.error || ""}: ${body.message || res.statusText}`), { status: res.status });
      return body;
    }
  }

  // The event log browser tests read (see common/events.js).
  const files = new Map();
  const info = (file) => {
    let s = files.get(file.id);
    if (!s) {
      s = { name: file.name, size: file.size, key: null };
      files.set(file.id, s);
    }
    return s;
  };
  const event = (file, type, extra = {}) => {
    const s = info(file);
    pushEvent(type, { file: s.name, bytesTotal: s.size, url: s.key, key: file.id, ...extra });
  };

  uppy.on("file-added", (file) => {
    uppy.setFileMeta(file.id, { size: String(file.size) }); // tusgate's declared size
  });
  // After a reload golden-retriever restores the files without their data
  // (too large for IndexedDB): once every one is selected again, the
  // uploads go on where S3 has them (this page proceeds by itself, as for
  // new files, rather than waiting for the Dashboard's button).
  uppy.on("files-added", (added) => {
    for (const file of added) {
      if (file.isRestored) event(file, "resumed", { bytesUploaded: null, uploadId: file.s3Multipart?.uploadId ?? null });
    }
    if (uppy.getState().recoveredState && !uppy.getFiles().some((f) => f.isGhost)) uppy.emit("restore-confirmed");
  });
  uppy.on("restored", () => {
    for (const file of uppy.getFiles()) {
      if (file.isGhost) event(file, "restored", { bytesUploaded: file.progress?.bytesUploaded ?? null });
    }
  });
  uppy.on("s3-multipart:part-uploaded", (file, part) => {
    const s = info(file);
    s.key = file.s3Multipart?.key ?? s.key;
    event(file, "part", { partNumber: part.PartNumber });
  });
  uppy.on("upload-progress", (file, progress) => {
    if (!file) return;
    event(file, "progress", { bytesUploaded: progress.bytesUploaded, bytesTotal: progress.bytesTotal });
  });
  uppy.on("upload-success", (file, response) => {
    if (!file) return;
    const s = info(file);
    s.key = response?.body?.key || file.s3Multipart?.key || s.key;
    event(file, "success", { bytesUploaded: s.size, location: response?.uploadURL ?? null });
  });
  uppy.on("upload-error", (file, err) => {
    if (!file) return;
    event(file, "error", { message: String(err?.message || err).slice(0, 500) });
  });
  uppy.on("file-removed", (file) => {
    // A multipart upload reports its cancel once the DELETE is answered
    // (abortMultipartUpload above); anything else right away.
    if (!file.progress?.uploadComplete && !file.s3Multipart?.uploadId) event(file, "cancelled", { status: null });
  });
}

main().catch((err) => showPageError(err));
