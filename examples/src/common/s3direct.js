// S3File uploads one file straight to S3 through tusgate's /s3/ routes
// (docs/direct-uploads.md): tusgate creates the multipart upload, signs
// each part for its exact size, and completes it; the bytes go from the
// browser to the bucket. Same interface as TusFile (start, pause, resume,
// cancel, state), so the Dropzone page can switch between them.

import { pushEvent } from "./events.js";

const MiB = 1024 * 1024;
const MIN_PART = 5 * MiB; // S3's smallest part (but the last)
const RETRY_DELAYS = [0, 1000, 3000, 5000, 10000];

// partChecksum is the SHA-256 of a part in base64, for tusgate to sign as
// x-amz-checksum-sha256: S3 then stores the part only if every byte
// arrived. (Some S3 servers, versitygw 1.8 among them, otherwise keep a
// part whose upload was cut off, filled up with zeros.) "" where the page
// has no WebCrypto (plain HTTP other than localhost).
export async function partChecksum(blob) {
  if (!globalThis.crypto?.subtle) return "";
  const digest = await crypto.subtle.digest("SHA-256", await blob.arrayBuffer());
  let bin = "";
  for (const b of new Uint8Array(digest)) bin += String.fromCharCode(b);
  return btoa(bin);
}

export class S3File {
  constructor(file, { auth, partSize = 8 * MiB, partsAtOnce = 3, ui }) {
    this.file = file;
    this.name = file.name;
    this.auth = auth;
    this.ui = ui;
    this.state = "new";
    this.partSize = Math.max(MIN_PART, partSize, Math.ceil(file.size / 10000));
    this.partCount = Math.max(1, Math.ceil(file.size / this.partSize));
    this.partsAtOnce = partsAtOnce;
    this.key = null;
    this.uploadId = null;
    this.done = new Map(); // part number -> ETag
    this.sent = new Map(); // part number -> bytes sent of a part in flight
    this.xhrs = new Set();
    this.controller = null;
  }

  event(type, extra = {}) {
    pushEvent(type, { file: this.name, bytesUploaded: this.bytesUploaded(), bytesTotal: this.file.size, url: this.key, ...extra });
  }

  setState(state, message) {
    this.state = state;
    this.ui.state(state, message);
  }

  bytesUploaded() {
    let n = 0;
    for (const pn of this.done.keys()) n += this.partBytes(pn);
    for (const b of this.sent.values()) n += b;
    return n;
  }

  partBytes(pn) {
    return Math.min(this.partSize, this.file.size - (pn - 1) * this.partSize);
  }

  progress() {
    // Paused or cancelled: the parts in flight were dropped, and a part
    // that finishes now would show less than the bar did.
    if (this.state !== "uploading") return;
    const sent = this.bytesUploaded();
    this.event("progress", { bytesUploaded: sent });
    this.ui.progress(sent, this.file.size);
  }

  // api calls a /s3/ route with the bearer token; a 401 gets one retry
  // with a renewed token.
  async api(method, path, body) {
    for (let attempt = 0; ; attempt++) {
      const token = await this.auth.getToken();
      const headers = token ? { Authorization: `Bearer ${token}` } : {};
      if (body) headers["Content-Type"] = "application/json";
      const res = await fetch(path, { method, headers, body: body && JSON.stringify(body), signal: this.controller?.signal });
      if (res.status === 401 && attempt === 0) {
        this.auth.invalidate();
        continue;
      }
      const data = await res.json().catch(() => ({}));
      if (!res.ok) throw Object.assign(new Error(data.message || `${method} ${path}: ${res.status}`), { status: res.status, code: data.error });
      return data;
    }
  }

  uploadPath(suffix = "") {
    return `/s3/multipart/${encodeURIComponent(this.uploadId)}${suffix}?key=${encodeURIComponent(this.key)}`;
  }

  async start() {
    if (this.state !== "new") return this.resume();
    this.controller = new AbortController();
    this.setState("starting", "Starting…");
    try {
      const created = await this.api("POST", "/s3/multipart", {
        filename: this.name,
        type: this.file.type || "application/octet-stream",
        size: this.file.size,
        metadata: {},
      });
      this.key = created.key;
      this.uploadId = created.uploadId;
      this.event("created");
      await this.run();
    } catch (err) {
      this.failed(err);
    }
  }

  // run sends the missing parts, partsAtOnce at a time, then completes.
  async run() {
    this.setState("uploading", "Uploading…");
    const todo = [];
    for (let pn = 1; pn <= this.partCount; pn++) if (!this.done.has(pn)) todo.push(pn);
    const worker = async () => {
      while (todo.length && this.state === "uploading") {
        const pn = todo.shift();
        await this.sendPart(pn);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.partsAtOnce, todo.length) }, worker));
    if (this.state !== "uploading") return; // paused or cancelled
    const parts = [...this.done].sort((a, b) => a[0] - b[0]).map(([PartNumber, ETag]) => ({ PartNumber, ETag }));
    const result = await this.api("POST", this.uploadPath("/complete"), { parts });
    this.key = result.key || this.key;
    this.setState("success", "Done");
    this.event("success", { bytesUploaded: this.file.size, location: result.location });
    this.ui.success();
  }

  // sendPart signs part pn for its size and PUTs it, retrying failures.
  async sendPart(pn) {
    const blob = this.file.slice((pn - 1) * this.partSize, (pn - 1) * this.partSize + this.partBytes(pn));
    for (let attempt = 0; ; attempt++) {
      try {
        const sum = await partChecksum(blob);
        const signed = await this.api("GET", `/s3/multipart/${encodeURIComponent(this.uploadId)}/${pn}?key=${encodeURIComponent(this.key)}&size=${blob.size}${sum ? `&sha256=${encodeURIComponent(sum)}` : ""}`);
        const etag = await this.put(pn, signed, blob);
        this.sent.delete(pn);
        this.done.set(pn, etag);
        this.progress();
        return;
      } catch (err) {
        this.sent.delete(pn);
        if (this.state !== "uploading" || err.name === "AbortError") throw err;
        if ((err.status >= 400 && err.status < 500 && err.status !== 403) || attempt + 1 >= RETRY_DELAYS.length) throw err;
        this.event("retry", { status: err.status ?? null, attempt: attempt + 1, message: err.message });
        await new Promise((r) => setTimeout(r, RETRY_DELAYS[attempt + 1]));
      }
    }
  }

  put(pn, signed, blob) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      this.xhrs.add(xhr);
      xhr.open("PUT", signed.url);
      for (const [k, v] of Object.entries(signed.headers || {})) xhr.setRequestHeader(k, v);
      xhr.upload.onprogress = (e) => {
        this.sent.set(pn, e.loaded);
        this.progress();
      };
      const end = () => this.xhrs.delete(xhr);
      xhr.onload = () => {
        end();
        const etag = xhr.getResponseHeader("ETag");
        if (xhr.status >= 200 && xhr.status < 300 && etag) resolve(etag);
        else if (xhr.status >= 200 && xhr.status < 300) reject(new Error("S3 stored the part but the browser cannot read its ETag: the bucket's CORS rules must expose ETag"));
        else reject(Object.assign(new Error(`S3 answered ${xhr.status} to part ${pn}`), { status: xhr.status }));
      };
      xhr.onerror = () => {
        end();
        reject(Object.assign(new Error(`part ${pn} did not reach S3 (network or CORS)`), { status: 0 }));
      };
      xhr.onabort = () => {
        end();
        reject(Object.assign(new Error("aborted"), { name: "AbortError" }));
      };
      xhr.send(blob);
    });
  }

  pause() {
    if (!["starting", "uploading"].includes(this.state)) return;
    this.setState("paused", "Paused");
    this.stop();
    this.event("paused");
  }

  // resume lists the parts S3 has and sends the rest.
  async resume() {
    if (!["paused", "error"].includes(this.state)) return;
    if (!this.uploadId) {
      this.state = "new";
      return this.start();
    }
    this.controller = new AbortController();
    this.event("unpaused");
    try {
      const parts = await this.api("GET", this.uploadPath());
      this.done = new Map(parts.filter((p) => p.Size === this.partBytes(p.PartNumber)).map((p) => [p.PartNumber, p.ETag]));
      await this.run();
    } catch (err) {
      this.failed(err);
    }
  }

  stop() {
    this.controller?.abort();
    for (const xhr of this.xhrs) xhr.abort();
    this.xhrs.clear();
    this.sent.clear();
  }

  // cancel aborts the multipart upload: S3 deletes its parts.
  async cancel() {
    const was = this.state;
    this.setState("cancelling", "Cancelling…");
    this.stop();
    let status = null;
    if (this.uploadId && was !== "success") {
      this.controller = null;
      try {
        await this.api("DELETE", this.uploadPath());
        status = 200;
      } catch (err) {
        status = err.status ?? null;
      }
    }
    this.setState("cancelled", "Cancelled");
    this.event("cancelled", { status });
  }

  failed(err) {
    if (err.name === "AbortError" || ["paused", "cancelling", "cancelled"].includes(this.state)) return;
    const message = err.message || String(err);
    this.setState("error", message);
    this.event("error", { status: err.status ?? null, message });
    this.ui.error(message);
  }
}
