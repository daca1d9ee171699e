// Shared tus client logic: options for tus-js-client (used directly by the
// Dropzone page and through @uppy/tus by the Uppy page), retry policy, error
// messages, and TusFile, one file's upload with pause/resume/cancel.

import * as tus from "tus-js-client";
import { pushEvent } from "./events.js";
import { formatBytes } from "./format.js";

// Delays between automatic retries. When they are used up on a transient
// failure the upload is restarted from its URL after RESTART_DELAY_MS (or as
// soon as the browser is back online), for as long as it takes.
export const RETRY_DELAYS = [0, 1000, 2000, 4000, 8000, 15000, 30000, 30000, 30000];
export const RESTART_DELAY_MS = 30000;

// status returns the HTTP status behind a tus-js-client error (0 for network
// errors and errors without a response). A 401 on HEAD is reported to
// tus-js-client as 423, see AuthHttpStack; this returns 401 for it.
export function errorStatus(err) {
  err = unwrap(err);
  const res = err?.originalResponse;
  if (!res) return 0;
  return res.tusgateStatus ?? res.getStatus();
}

// unwrap returns the tus-js-client error inside @uppy/core's NetworkError.
export function unwrap(err) {
  return err?.isNetworkError && err.cause ? err.cause : err;
}

export function isAuthRequired(err) {
  let e = err;
  for (let i = 0; e && i < 5; i++, e = e.causingError || e.cause) {
    if (e.authRequired) return true;
  }
  return false;
}

function isOffline() {
  return typeof navigator !== "undefined" && navigator.onLine === false;
}

// isTransient says whether a failure may go away by itself: network errors,
// 5xx, 423 (locked), 409 (offset mismatch: a HEAD sorts it out), 429, and
// 401 (renewing the token may fix it). Not: other 4xx, or a login that has
// to be repeated.
export function isTransient(err) {
  if (err?.isNetworkError) return !isAuthRequired(err.cause);
  if (isAuthRequired(err)) return false;
  if (err?.originalRequest == null && err?.originalResponse == null) {
    // Not an HTTP failure at all (e.g. the file cannot be read).
    return false;
  }
  const s = errorStatus(err);
  return s === 0 || s === 401 || s === 409 || s === 423 || s === 429 || s >= 500;
}

// retryMessage describes a failure that is retried, for the event log.
export function retryMessage(err) {
  err = unwrap(err);
  if (errorStatus(err) === 401) return "the server refused the token (401); retrying with a renewed one";
  return String(err?.message || err).slice(0, 300);
}

// makeShouldRetry builds tus-js-client's onShouldRetry: retry on transient
// failures while online; on a 401 first mark the token rejected so the next
// request carries a fresh one. onRetry(status, attempt, err) is told of each
// retry.
export function makeShouldRetry(auth, onRetry) {
  return (err, attempt) => {
    if (!isTransient(err)) return false;
    if (isOffline() && errorStatus(err) === 0) return false; // wait for "online" instead
    const status = errorStatus(err);
    if (status === 401) auth.invalidate();
    onRetry?.(status, attempt, err);
    return true;
  };
}

// AuthHttpStack wraps tus-js-client's browser HTTP stack. Its one job: a 401
// answer to the resume HEAD must not make tus-js-client drop the upload URL
// and start again from byte 0 (it does that for any 4xx on HEAD but 423).
// Such a 401 is handed to tus-js-client as 423, so it retries the HEAD (with
// a renewed token, see makeShouldRetry); errorStatus() still reports 401.
export class AuthHttpStack {
  constructor(inner = new tus.DefaultHttpStack()) {
    this.inner = inner;
  }

  createRequest(method, url) {
    return new AuthRequest(this.inner.createRequest(method, url));
  }

  getName() {
    return `tusgate(${this.inner.getName()})`;
  }
}

class AuthRequest {
  constructor(req) {
    this.req = req;
  }
  getMethod() {
    return this.req.getMethod();
  }
  getURL() {
    return this.req.getURL();
  }
  setHeader(k, v) {
    return this.req.setHeader(k, v);
  }
  getHeader(k) {
    return this.req.getHeader(k);
  }
  setProgressHandler(fn) {
    return this.req.setProgressHandler(fn);
  }
  abort() {
    return this.req.abort();
  }
  getUnderlyingObject() {
    return this.req.getUnderlyingObject();
  }
  async send(body) {
    const res = await this.req.send(body);
    if (this.req.getMethod() === "HEAD" && res.getStatus() === 401) {
      return new LockedForAuth(res);
    }
    return res;
  }
}

class LockedForAuth {
  constructor(res) {
    this.res = res;
    this.tusgateStatus = 401;
  }
  getStatus() {
    return 423;
  }
  getHeader(k) {
    return this.res.getHeader(k);
  }
  getBody() {
    return this.res.getBody();
  }
  getUnderlyingObject() {
    return this.res.getUnderlyingObject();
  }
}

// SortedUrlStorage is tus-js-client's localStorage URL storage, returning
// the most recent upload first (findPreviousUploads()[0] is what gets
// resumed) and telling onFound about every lookup that found something.
export class SortedUrlStorage {
  constructor(onFound) {
    this.inner = new tus.defaultOptions.urlStorage.constructor();
    this.onFound = onFound;
  }
  findAllUploads() {
    return this.inner.findAllUploads();
  }
  async findUploadsByFingerprint(fp) {
    const list = await this.inner.findUploadsByFingerprint(fp);
    list.sort((a, b) => Date.parse(b.creationTime) - Date.parse(a.creationTime));
    if (list.length && this.onFound) this.onFound(fp, list);
    return list;
  }
  removeUpload(key) {
    return this.inner.removeUpload(key);
  }
  addUpload(fp, upload) {
    return this.inner.addUpload(fp, upload);
  }
}

function responseText(err) {
  try {
    const body = err?.originalResponse?.getBody?.();
    if (typeof body === "string") return body.trim().slice(0, 300);
  } catch {}
  return "";
}

// describeError turns a failure into a message for people.
export function describeError(err, maxSize) {
  err = unwrap(err);
  if (isAuthRequired(err)) return "Session expired, log in again.";
  const s = errorStatus(err);
  const detail = responseText(err);
  switch (s) {
    case 0:
      if (err?.originalRequest == null) return err?.message || String(err);
      return isOffline() ? "Offline — will resume when the connection is back." : "Offline — will resume (the server is unreachable).";
    case 401:
      return "Session expired, log in again.";
    case 403:
      return `Not allowed (403): ${detail || "your login lacks the permission to upload"}.`;
    case 404:
      return "The upload is gone (404): it expired or was removed; retrying starts it over.";
    case 413:
      return `File too large (413), limit ${maxSize ? formatBytes(maxSize) : "set by the server"}.`;
    case 423:
    case 409:
    case 429:
      return `The server is busy (${s}), retrying.`;
    default:
      if (s >= 500) return `The server had a problem (${s}), retrying.`;
      return `The server refused the upload (${s})${detail ? ": " + detail : "."}`;
  }
}

// fingerprint identifies a file for resuming; it adds the user to
// tus-js-client's own so that two users of one browser don't share entries.
export function makeFingerprint(user) {
  return (file, options) =>
    Promise.resolve(["tus-br", file.name, file.type, file.size, file.lastModified, options.endpoint, user].join("-"));
}

// TusFile is one file's upload: started, paused, resumed, cancelled, and
// restarted from its URL after transient failures, however long they last.
// ui receives callbacks: progress(bytes, total), state(state, message),
// note(text), success(), error(message, status).
// Upload URLs that a TusFile of this page is working on: a second copy of
// the same file must not resume the first one's upload under its feet.
const urlsInUse = new Set();

export class TusFile {
  constructor(file, { endpoint, auth, chunkSize, maxSize, user, ui }) {
    this.file = file;
    this.name = file.name;
    this.auth = auth;
    this.maxSize = maxSize;
    this.ui = ui;
    this.state = "new";
    this.bytesUploaded = 0;
    this.bytesTotal = file.size;
    this.url = null;
    this.restartTimer = null;
    this.onOnline = null;

    this.upload = new tus.Upload(file, {
      endpoint,
      chunkSize,
      retryDelays: RETRY_DELAYS,
      metadata: { filename: file.name, filetype: file.type || "application/octet-stream" },
      storeFingerprintForResuming: true,
      removeFingerprintOnSuccess: true,
      fingerprint: makeFingerprint(user),
      urlStorage: new SortedUrlStorage(),
      httpStack: new AuthHttpStack(),
      onBeforeRequest: async (req) => {
        const token = await auth.getToken();
        if (token) req.setHeader("Authorization", `Bearer ${token}`);
      },
      onShouldRetry: makeShouldRetry(auth, (status, attempt, err) => {
        this.event("retry", { status, attempt, message: retryMessage(err) });
        this.setState("retrying", describeError(err, maxSize));
      }),
      onUploadUrlAvailable: () => {
        const url = this.upload.url;
        if (url !== this.url) {
          urlsInUse.delete(this.url);
          this.url = url;
          urlsInUse.add(url);
          this.event("created");
        }
        if (this.state === "retrying" || this.state === "waiting") this.setState("uploading", "");
      },
      onProgress: (sent, total) => {
        this.bytesUploaded = sent;
        this.bytesTotal = total;
        if (this.state !== "uploading" && this.state !== "paused" && this.state !== "cancelling") {
          this.setState("uploading", "");
        }
        this.event("progress");
        this.ui.progress(sent, total);
      },
      onSuccess: () => {
        this.bytesUploaded = this.bytesTotal;
        this.setState("success", "Done");
        this.event("success");
        this.ui.success();
        this.showObjectChecksum();
      },
      onError: (err) => this.failed(err),
    });
  }

  // showObjectChecksum reads the finished object's checksum, which S3
  // validated when it assembled the object (Upload-Object-Checksum on
  // HEAD; docs/integrity.md), and shows it next to the file. A store
  // without one (the disk) shows nothing.
  async showObjectChecksum() {
    try {
      const headers = { "Tus-Resumable": "1.0.0" };
      const token = await this.auth.getToken();
      if (token) headers.Authorization = `Bearer ${token}`;
      const res = await fetch(this.upload.url, { method: "HEAD", headers });
      const sum = res.ok ? res.headers.get("Upload-Object-Checksum") : null;
      if (!sum) return;
      const [alg, value] = sum.split(" ");
      this.ui.note?.(`${alg.toUpperCase()} of the stored object: ${value}`);
      this.event("checksum", { checksum: sum });
    } catch (err) {
      console.warn("tusgate: reading the object's checksum", err);
    }
  }

  event(type, extra = {}) {
    pushEvent(type, {
      file: this.name,
      bytesUploaded: this.bytesUploaded,
      bytesTotal: this.bytesTotal,
      url: this.url,
      ...extra,
    });
  }

  setState(state, message) {
    this.state = state;
    this.ui.state(state, message);
  }

  // start begins the upload, resuming an earlier one of the same file (from
  // this browser, by this user) if there is one.
  async start() {
    if (this.state !== "new") return this.resume();
    this.setState("starting", "Starting…");
    try {
      const previous = (await this.upload.findPreviousUploads()).filter((p) => p.uploadUrl && !urlsInUse.has(p.uploadUrl));
      if (previous.length) {
        this.upload.resumeFromPreviousUpload(previous[0]);
        this.url = previous[0].uploadUrl;
        urlsInUse.add(this.url);
        this.event("resumed", { bytesUploaded: null, createdAt: previous[0].creationTime });
        this.ui.note(`Resuming an earlier upload of ${this.name}`);
      }
    } catch (err) {
      console.warn("tusgate: cannot look for earlier uploads:", err);
    }
    if (this.state === "starting") {
      this.setState("uploading", "Uploading…");
      this.upload.start();
    }
  }

  pause() {
    if (!["starting", "uploading", "retrying", "waiting"].includes(this.state)) return;
    this.clearRestart();
    this.upload.abort(false);
    this.setState("paused", "Paused");
    this.event("paused");
  }

  // resume continues after pause() or an error, from the server's offset.
  resume() {
    if (!["paused", "error", "waiting"].includes(this.state)) return;
    this.clearRestart();
    this.event("unpaused");
    this.setState("uploading", "Resuming…");
    this.upload.start();
  }

  // cancel stops the upload and deletes it on the server (DELETE, which also
  // aborts the S3 multipart upload). Resolves once the DELETE is answered.
  async cancel() {
    if (["success", "cancelled", "cancelling"].includes(this.state)) return;
    this.clearRestart();
    const hadUpload = this.state !== "new";
    this.setState("cancelling", "Cancelling…");
    let status = null;
    let message;
    if (hadUpload) {
      try {
        await this.upload.abort(true);
        status = this.url ? 204 : null;
      } catch (err) {
        status = errorStatus(err);
        message = status === 404 ? "already gone" : describeError(err, this.maxSize);
      }
    }
    this.setState("cancelled", status === 404 || !message ? "Cancelled" : `Cancelled (${message})`);
    this.event("cancelled", { status, message });
  }

  failed(err) {
    const status = errorStatus(err);
    const message = describeError(err, this.maxSize);
    if (isTransient(err) && status !== 401) {
      // Retries used up (or offline): keep the URL and start again later.
      this.setState("waiting", message);
      this.scheduleRestart(status, err);
      return;
    }
    if (status === 401 && !isAuthRequired(err)) {
      // Several fresh tokens were refused: that will not fix itself.
      console.warn("tusgate: the server keeps refusing fresh tokens", err);
    }
    this.setState("error", message);
    this.event("error", { status, message, detail: String(err?.message || err).slice(0, 500) });
    this.ui.error(message, status);
  }

  scheduleRestart(status, err) {
    this.clearRestart();
    const restart = () => {
      this.clearRestart();
      if (this.state !== "waiting") return;
      this.event("retry", { status, restart: true, message: retryMessage(err) });
      this.setState("retrying", "Trying again…");
      this.upload.start();
    };
    this.restartTimer = setTimeout(restart, RESTART_DELAY_MS);
    this.onOnline = restart;
    window.addEventListener("online", restart, { once: true });
  }

  clearRestart() {
    clearTimeout(this.restartTimer);
    this.restartTimer = null;
    if (this.onOnline) window.removeEventListener("online", this.onOnline);
    this.onOnline = null;
  }
}
