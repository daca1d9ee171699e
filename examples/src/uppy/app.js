// Uppy front end: Uppy core + Dashboard (inline) + @uppy/tus, with the same
// token handling, retry policy and event log as the Dropzone page.

import Uppy from "@uppy/core";
import Dashboard from "@uppy/dashboard";
import Tus from "@uppy/tus";
import "@uppy/core/css/style.min.css";
import "@uppy/dashboard/css/style.min.css";
import "./app.css";

import { Auth, loadConfig } from "../common/auth.js";
import { pushEvent } from "../common/events.js";
import { formatBytes, queryParams } from "../common/format.js";
import {
  AuthHttpStack,
  describeError,
  errorStatus,
  isTransient,
  makeShouldRetry,
  RESTART_DELAY_MS,
  RETRY_DELAYS,
  retryMessage,
  SortedUrlStorage,
  unwrap,
} from "../common/tus.js";
import { showPageError, watchOnline } from "../common/page.js";

async function main() {
  const cfg = await loadConfig();
  const params = queryParams();
  const auth = new Auth(cfg, { ttl: params.ttl });
  window.tusgate = { cfg, auth, params };
  watchOnline();
  await auth.init();

  const endpoint = new URL(cfg.endpoint, location.href).href;
  // Uppy's tus fingerprint is "tus-<file id>-<endpoint>" and a file ID
  // starts with the Uppy instance's ID: putting the user there keeps two
  // users of one browser from resuming each other's uploads.
  const uppyID = `tusgate-${(auth.userName || "anonymous").replace(/[^A-Za-z0-9_-]/g, "_")}`;

  // What we know of each file (by Uppy file ID), for the event log.
  const files = new Map();
  const info = (id) => {
    let s = files.get(id);
    if (!s) {
      s = { name: null, size: null, url: null, bytes: 0, started: false, done: false, restartTimer: null, onOnline: null };
      files.set(id, s);
    }
    return s;
  };
  const event = (id, type, extra = {}) => {
    const s = info(id);
    pushEvent(type, { file: s.name, bytesUploaded: s.bytes, bytesTotal: s.size, url: s.url, key: id, ...extra });
  };

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
    doneButtonHandler: null, // keep the list after everything is uploaded
    note:
      `${params.parallel} at a time` +
      (cfg.maxSize > 0 ? ` · up to ${formatBytes(cfg.maxSize)} each` : "") +
      " · uploads resume after a reload or a lost connection",
  });

  const urlStorage = new SortedUrlStorage((fingerprint, found) => {
    // Uppy looks for an earlier upload of the file before each start.
    const prefix = "tus-";
    const suffix = `-${endpoint}`;
    if (!fingerprint.startsWith(prefix) || !fingerprint.endsWith(suffix)) return;
    const id = fingerprint.slice(prefix.length, -suffix.length);
    const s = info(id);
    if (s.started) return; // a restart of this page's own upload
    s.started = true;
    s.url = found[0].uploadUrl || null;
    event(id, "resumed", { bytesUploaded: null, createdAt: found[0].creationTime });
    note(s.name, `Resuming an earlier upload of ${s.name}`);
    uppy.info(`Resuming an earlier upload of ${s.name}`, "info", 5000);
  });

  uppy.use(Tus, {
    endpoint,
    limit: params.parallel,
    chunkSize: params.chunkSize,
    retryDelays: RETRY_DELAYS,
    storeFingerprintForResuming: true,
    removeFingerprintOnSuccess: true,
    allowedMetaFields: ["filename", "filetype"],
    httpStack: new AuthHttpStack(),
    urlStorage,
    onBeforeRequest: async (req) => {
      const token = await auth.getToken();
      if (token) req.setHeader("Authorization", `Bearer ${token}`);
    },
  });
  const tusPlugin = uppy.getPlugin("Tus");

  uppy.on("file-added", (file) => {
    const id = file.id;
    const s = info(id);
    s.name = file.name;
    s.size = file.size;
    uppy.setFileMeta(id, { filename: file.name, filetype: file.type || "application/octet-stream" });
    // Per-file tus options (Uppy merges file.tus over the plugin's options).
    const shouldRetry = makeShouldRetry(auth, (status, attempt, err) => {
      event(id, "retry", { status, attempt, message: retryMessage(err) });
    });
    uppy.setFileState(id, {
      tus: {
        ...file.tus,
        onShouldRetry: (err, attempt, _opts, next) => {
          if (!shouldRetry(err, attempt)) return false;
          // Uppy's own handler does its queue bookkeeping (and 429 rate
          // limiting); it refuses 4xx, but a 401 is worth a retry with a
          // fresh token.
          if (errorStatus(err) !== 401) next(err);
          return true;
        },
        onUploadUrlAvailable: () => {
          const url = tusPlugin.uploaders[id]?.url ?? null;
          if (url && url !== s.url) {
            s.url = url;
            s.started = true;
            event(id, "created");
          }
        },
        onAfterResponse: (req, res) => {
          if (req.getMethod() === "DELETE") {
            event(id, "cancelled", { status: res.getStatus() });
          }
        },
      },
    });
  });

  uppy.on("upload-progress", (file, progress) => {
    if (!file) return;
    const s = info(file.id);
    s.started = true;
    s.bytes = progress.bytesUploaded;
    s.size = progress.bytesTotal ?? s.size;
    event(file.id, "progress");
  });

  uppy.on("upload-success", (file, response) => {
    if (!file) return;
    const s = info(file.id);
    s.done = true;
    s.bytes = s.size;
    s.url = response?.uploadURL || s.url;
    unnote(s.name, "waiting");
    event(file.id, "success");
  });

  uppy.on("upload-pause", (file, isPaused) => {
    if (!file) return;
    event(file.id, isPaused ? "paused" : "unpaused");
  });

  uppy.on("upload-error", (file, err) => {
    if (!file) return;
    const s = info(file.id);
    const status = errorStatus(err);
    const message = describeError(err, cfg.maxSize);
    uppy.setFileState(file.id, { error: message });
    if (isTransient(err) && status !== 401) {
      // Retries used up (or offline): try again from the same URL later.
      note(s.name, `${s.name}: ${message} It continues by itself.`, "waiting");
      scheduleRestart(file.id, status, err);
      return;
    }
    const detail = String(unwrap(err)?.message || err).slice(0, 500);
    event(file.id, "error", { status, message, detail });
  });

  uppy.on("restriction-failed", (file, err) => {
    if (!file) return;
    const s = info(file.id);
    s.name = file.name;
    s.size = file.size;
    const tooBig = cfg.maxSize > 0 && file.size > cfg.maxSize;
    event(file.id, "error", {
      status: tooBig ? 413 : null,
      message: tooBig ? `File too large, limit ${formatBytes(cfg.maxSize)}.` : err.message,
      clientSide: true,
    });
  });

  uppy.on("file-removed", (file) => {
    const s = info(file.id);
    clearRestart(s);
    if (s.done) return;
    // With an upload URL @uppy/tus sends DELETE; onAfterResponse reports it.
    if (!s.url) event(file.id, "cancelled", { status: null });
  });

  function scheduleRestart(id, status, err) {
    const s = info(id);
    clearRestart(s);
    const restart = () => {
      clearRestart(s);
      const f = uppy.getFile(id);
      if (!f || !f.error) return; // removed, or retried by hand
      event(id, "retry", { status, restart: true, message: retryMessage(err) });
      unnote(s.name, "waiting");
      uppy.retryUpload(id);
    };
    s.restartTimer = setTimeout(restart, RESTART_DELAY_MS);
    s.onOnline = restart;
    window.addEventListener("online", restart, { once: true });
  }

  function clearRestart(s) {
    clearTimeout(s.restartTimer);
    s.restartTimer = null;
    if (s.onOnline) window.removeEventListener("online", s.onOnline);
    s.onOnline = null;
  }

  // Notes below the Dashboard: "resumed" (kept) and "waiting" (removed
  // when the upload continues).
  function note(name, text, kind = "resumed") {
    unnote(name, kind);
    const list = document.getElementById("notes");
    const li = document.createElement("li");
    li.dataset.file = name;
    li.dataset.kind = kind;
    li.textContent = text;
    list.append(li);
    list.hidden = false;
  }

  function unnote(name, kind) {
    const list = document.getElementById("notes");
    for (const li of list.querySelectorAll("li")) {
      if (li.dataset.file === name && li.dataset.kind === kind) li.remove();
    }
    list.hidden = !list.children.length;
  }
}

main().catch((err) => showPageError(err));
