// Dropzone 6 front end: Dropzone handles the drop target, the file input and
// the queue (parallelUploads at a time); each file is uploaded with tus
// (src/common/tus.js) instead of Dropzone's own XHR.

import Dropzone from "dropzone";
import "dropzone/dist/basic.css";
import "./app.css";

import { Auth, loadConfig } from "../common/auth.js";
import { pushEvent } from "../common/events.js";
import { formatBytes, progressText, queryParams, RateMeter } from "../common/format.js";
import { TusFile } from "../common/tus.js";
import { S3File } from "../common/s3direct.js";
import { watchOnline, showPageError } from "../common/page.js";

// Dropzone has no status for a paused file; one in this status does not
// count against parallelUploads, so pausing lets a queued file start.
const PAUSED = "paused";

async function main() {
  const cfg = await loadConfig();
  const params = queryParams();
  const auth = new Auth(cfg, { ttl: params.ttl });
  window.tusgate = { cfg, auth, params };
  watchOnline();
  await auth.init();

  const endpoint = new URL(cfg.endpoint, location.href).href;
  const limits = document.getElementById("limits");
  limits.textContent =
    `${params.parallel} at a time` +
    (cfg.maxSize > 0 ? ` · up to ${formatBytes(cfg.maxSize)} each` : "") +
    (Number.isFinite(params.chunkSize) ? ` · ${formatBytes(params.chunkSize)} per request` : "");

  // "Straight to S3": files added while it is on go to the bucket through
  // tusgate's /s3/ routes (common/s3direct.js) instead of tus.
  const direct = document.getElementById("direct-toggle");
  document.getElementById("direct-switch").hidden = !cfg.directUploads;
  direct.checked = Boolean(cfg.directUploads && params.direct);

  const dz = new Dropzone("#dropzone", {
    url: endpoint, // not used for sending: uploadFiles is replaced below
    autoProcessQueue: true,
    parallelUploads: params.parallel,
    maxFilesize: cfg.maxSize > 0 ? cfg.maxSize / (1024 * 1024) : null,
    dictFileTooBig: `File too large, limit ${cfg.maxSize > 0 ? formatBytes(cfg.maxSize) : "none"}.`,
    previewsContainer: "#files",
    previewTemplate: document.getElementById("row-template").innerHTML,
    createImageThumbnails: false,
    filesizeBase: 1000,

    // UI handlers (these replace Dropzone's defaults).
    processing(file) {
      rowOf(file)?.setState("starting", "Starting…");
    },
    uploadprogress(file, percent, bytesSent) {
      rowOf(file)?.progress(bytesSent, file.upload.total);
    },
    error(file, message) {
      // Dropzone's own errors (file too large) and ours.
      const row = rowOf(file);
      if (!file.tus) {
        // Rejected before upload: report it here.
        const msg = typeof message === "string" ? message : message?.error || String(message);
        row?.setState("rejected", msg);
        pushEvent("error", { file: file.name, bytesUploaded: 0, bytesTotal: file.size, status: 413, message: msg, clientSide: true });
      }
    },
    canceled() {},
    success() {},
    complete() {},
  });
  window.tusgate.dropzone = dz;

  const rows = new WeakMap();
  const rowOf = (file) => rows.get(file);

  dz.on("addedfile", (file) => {
    const el = file.previewElement;
    const row = new Row(el, file);
    rows.set(file, row);
    el.querySelector('[data-action="pause"]').addEventListener("click", () => pause(file));
    el.querySelector('[data-action="resume"]').addEventListener("click", () => resume(file));
    el.querySelector('[data-action="cancel"]').addEventListener("click", () => cancel(file));
    updateSummary();
  });

  // Instead of Dropzone's XHR: upload each file with tus. Dropzone calls this
  // from processQueue() with files it has set to UPLOADING; when a file ends
  // we set its status and emit what Dropzone would, then processQueue() again
  // so the next queued file starts.
  dz.uploadFiles = (files) => {
    for (const file of files) {
      if (!file.tus && direct.checked) {
        file.tus = new S3File(file, { auth, ui: uiFor(file) });
      }
      if (!file.tus) {
        file.tus = new TusFile(file, {
          endpoint,
          auth,
          chunkSize: params.chunkSize,
          maxSize: cfg.maxSize,
          user: auth.userName,
          ui: uiFor(file),
        });
      }
      file.tus.start();
    }
  };

  function uiFor(file) {
    return {
      progress(sent, total) {
        file.upload.bytesSent = sent;
        file.upload.total = total;
        file.upload.progress = total ? (100 * sent) / total : 100;
        dz.emit("uploadprogress", file, file.upload.progress, sent);
      },
      state(state, message) {
        rowOf(file)?.setState(state, message);
        updateSummary();
      },
      note(text) {
        rowOf(file)?.note(text);
      },
      success() {
        file.status = Dropzone.SUCCESS;
        dz.emit("success", file, "");
        dz.emit("complete", file);
        dz.processQueue();
        updateSummary();
      },
      error(message) {
        file.status = Dropzone.ERROR;
        dz.emit("error", file, message);
        dz.emit("complete", file);
        dz.processQueue();
        updateSummary();
      },
    };
  }

  function pause(file) {
    if (file.status !== Dropzone.UPLOADING || !file.tus) return;
    file.tus.pause();
    file.status = PAUSED;
    dz.processQueue();
    updateSummary();
  }

  function resume(file) {
    const t = file.tus;
    if (!t) return;
    if (file.status === Dropzone.UPLOADING && t.state === "waiting") {
      t.resume(); // "retry now" while waiting to restart
      return;
    }
    if (file.status !== PAUSED && file.status !== Dropzone.ERROR) return;
    // Back into the queue: it starts when a slot is free (at once, usually).
    file.status = Dropzone.QUEUED;
    rowOf(file)?.setState("queued", "Queued");
    dz.processQueue();
    updateSummary();
  }

  async function cancel(file) {
    const done = [Dropzone.SUCCESS, Dropzone.CANCELED].includes(file.status);
    if (done) return;
    file.status = Dropzone.CANCELED;
    dz.emit("canceled", file); // Dropzone turns this into "complete"
    dz.processQueue();
    if (file.tus && file.tus.state !== "new") {
      await file.tus.cancel(); // pushes "cancelled" once the DELETE is answered
    } else {
      rowOf(file)?.setState("cancelled", "Cancelled");
      pushEvent("cancelled", { file: file.name, bytesUploaded: 0, bytesTotal: file.size, status: null });
    }
    updateSummary();
  }

  function updateSummary() {
    const files = dz.files;
    const done = files.filter((f) => f.status === Dropzone.SUCCESS).length;
    const active = files.filter((f) => f.status === Dropzone.UPLOADING).length;
    const queued = files.filter((f) => f.status === Dropzone.QUEUED).length;
    const parts = [`${done} of ${files.length} done`];
    if (active) parts.push(`${active} uploading`);
    if (queued) parts.push(`${queued} queued`);
    document.getElementById("summary").textContent = files.length ? `(${parts.join(", ")})` : "";
  }
}

// Row renders one file's line: progress bar, numbers, status, buttons.
class Row {
  constructor(el, file) {
    this.el = el;
    this.file = file;
    el.dataset.file = file.name;
    el.querySelector("[data-dz-size]").textContent = formatBytes(file.size);
    this.bar = el.querySelector("progress");
    this.bar.setAttribute("aria-label", `Upload progress of ${file.name}`);
    this.stats = el.querySelector('[data-role="stats"]');
    this.status = el.querySelector('[data-role="status"]');
    this.noteEl = el.querySelector('[data-role="note"]');
    this.buttons = {
      pause: el.querySelector('[data-action="pause"]'),
      resume: el.querySelector('[data-action="resume"]'),
      cancel: el.querySelector('[data-action="cancel"]'),
    };
    for (const [k, b] of Object.entries(this.buttons)) b.setAttribute("aria-label", `${b.textContent} ${file.name}`);
    this.meter = new RateMeter();
    this.lastRender = 0;
    this.setState("queued", "Queued");
  }

  progress(sent, total) {
    this.sent = sent;
    this.total = total;
    this.meter.add(sent);
    const now = performance.now();
    if (now - this.lastRender < 100 && sent !== total) return;
    this.lastRender = now;
    this.bar.max = total || 1;
    this.bar.value = total ? sent : 1;
    this.stats.textContent = progressText(sent, total, this.meter.rate());
  }

  setState(state, message) {
    this.el.dataset.state = state;
    if (message !== undefined && message !== "") this.status.textContent = message;
    else if (state === "uploading") this.status.textContent = "Uploading…";
    const b = this.buttons;
    const active = ["starting", "uploading", "retrying", "waiting"].includes(state);
    b.pause.hidden = !active;
    b.resume.hidden = !["paused", "error", "waiting"].includes(state);
    b.resume.textContent = state === "paused" ? "Resume" : state === "waiting" ? "Retry now" : "Retry";
    b.resume.setAttribute("aria-label", `${b.resume.textContent} ${this.file.name}`);
    b.cancel.hidden = !(active || ["queued", "paused", "error"].includes(state));
    if (state === "success") {
      this.bar.max = this.file.size || 1;
      this.bar.value = this.file.size || 1;
      this.stats.textContent = `${formatBytes(this.file.size)} uploaded`;
      this.meter.reset();
    }
    if (state === "rejected") this.stats.textContent = "Not uploaded";
    if (state === "paused" || state === "waiting" || state === "error") {
      this.meter.reset();
      if (this.total) this.stats.textContent = `${formatBytes(this.sent)} / ${formatBytes(this.total)}`;
    }
  }

  note(text) {
    this.noteEl.textContent = text;
    this.noteEl.hidden = false;
  }
}

main().catch((err) => showPageError(err));
