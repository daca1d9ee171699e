#!/usr/bin/env node
// Browser test driver for tusgate's example pages (examples/). Drives
// /usr/bin/chromium with playwright-core and prints one JSON object per line
// on stdout: every entry the page pushes to window.tusgateEvents (with
// "event" = its type), plus the driver's own lines:
//   {"event":"ready"}                              logged in, about to add files
//   {"event":"check","ok":false,"reason":"…"}      a progress check failed
//   {"event":"command","command":"…","ok":…}       a stdin command ran
//   {"event":"screenshot","path":"…"}              a screenshot was written
//   {"event":"reloaded","generation":N}            the page was reloaded
//   {"event":"s3put","partNumber":N,"generation":G}  the page started a PUT to a
//                                                  presigned S3 URL (partNumber 0: a single PUT)
//   {"event":"s3stored","partNumber":N,"generation":G,"status":S}  S3 answered it
//   {"event":"done","ok":true|false,"reason":"…"}  the end; exit status 0 if ok
// Diagnostics (page console errors, uncaught errors) go to stderr.
//
// Usage:
//   node driver.mjs --url http://127.0.0.1:PORT --page dropzone|uppy|uppy-s3 [--direct]
//        --files /abs/a.bin,/abs/b.bin [--user alice] [--parallel 3] [--chunk N]
//        [--scenario basic|wait|cancel|reload] [--throttle BYTES_PER_SEC]
//        [--timeout-ms N] [--ttl 30s] [--screenshot PATH [--screenshot-at PCT]]
//        [--headed] [--checksums]
//
// --checksums (basic, wait): after every success, also wait for every file's
// checksum event (the finished object's Upload-Object-Checksum, which the
// Dropzone page shows).
//
// --direct turns on the Dropzone page's "Straight to S3" switch (?direct=1);
// uppy-s3 is the Uppy page with @uppy/aws-s3. Both upload straight to S3.
//
// Scenarios (the "first file" is the first of --files):
//   basic, wait  every file gets a success event
//   cancel       at ≥ 20 % of the first file, cancel it (Dropzone: its row's
//                [data-action=cancel]; Uppy: its Dashboard remove button) and
//                wait for its cancelled event
//   reload       at ≥ 40 % of the first file, reload the page; it logs in again
//                by itself (dev mode keeps the user in sessionStorage); add the
//                files not yet uploaded again; the first file must be
//                resumed; then every file gets a success event
//
// Commands on stdin, one per line, at any time:
//   reload | pause NAME | resume NAME | cancel NAME | offline | online |
//   throttle BYTES_PER_SEC (0 = off) | screenshot PATH

import { createInterface } from "node:readline";
import { existsSync, statSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { chromium } from "playwright-core";

const { values: opt } = parseArgs({
  options: {
    url: { type: "string" },
    page: { type: "string", default: "dropzone" },
    files: { type: "string" },
    user: { type: "string", default: "alice" },
    parallel: { type: "string" },
    chunk: { type: "string" },
    scenario: { type: "string", default: "basic" },
    throttle: { type: "string" },
    "timeout-ms": { type: "string", default: "600000" },
    ttl: { type: "string" },
    screenshot: { type: "string" },
    "screenshot-at": { type: "string", default: "50" },
    headed: { type: "boolean", default: false },
    direct: { type: "boolean", default: false },
    checksums: { type: "boolean", default: false },
    "part-size": { type: "string" },
    chromium: { type: "string", default: "/usr/bin/chromium" },
  },
  strict: true,
});

function usage(msg) {
  process.stderr.write(`driver: ${msg}\n`);
  process.exit(2);
}
if (!opt.url) usage("--url is required");
if (!["dropzone", "uppy", "uppy-s3"].includes(opt.page)) usage("--page must be dropzone, uppy or uppy-s3");
if (!opt.files) usage("--files is required");
if (!["basic", "wait", "cancel", "reload"].includes(opt.scenario)) usage("--scenario must be basic, wait, cancel or reload");
const filePaths = opt.files.split(",").filter(Boolean);
for (const f of filePaths) {
  if (!path.isAbsolute(f) || !existsSync(f)) usage(`--files: ${f} is not an existing absolute path`);
}
const fileNames = filePaths.map((f) => path.basename(f));
const sizes = new Map(filePaths.map((f) => [path.basename(f), statSync(f).size]));
const first = fileNames[0];
const timeoutMs = Number(opt["timeout-ms"]);
let throttle = opt.throttle ? Number(opt.throttle) : 0;

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}
function diag(msg) {
  process.stderr.write(`driver: ${msg}\n`);
}

// ---- state built from the page's events ----
const state = {
  generation: 0, // page loads: 1 = the first
  seen: 0, // events of this generation already read
  progress: new Map(), // file -> last bytesUploaded since the last boundary
  maxProgress: new Map(), // file -> highest fraction seen (0..1)
  lastProgress: new Map(), // file -> {bytesUploaded, bytesTotal} of the last progress event
  success: new Map(), // file -> count
  cancelled: new Set(),
  cancelStatus: new Map(),
  failed: new Map(), // file -> message of its last error event (cleared by success)
  resumedAfterReload: new Set(),
  checksum: new Map(), // file -> the object's checksum, "crc32 <base64>"
  errors: [],
  checksFailed: 0,
};

function boundary(file) {
  state.progress.delete(file);
}

function onEvent(ev) {
  const { type, ...rest } = ev;
  out({ event: type, ...rest });
  const f = ev.file;
  switch (type) {
    case "progress": {
      const prev = state.progress.get(f);
      if (prev != null && ev.bytesUploaded < prev) {
        check(false, `${f}: progress went back from ${prev} to ${ev.bytesUploaded} without a resumed/retry event`);
      }
      state.progress.set(f, ev.bytesUploaded);
      state.lastProgress.set(f, { bytesUploaded: ev.bytesUploaded, bytesTotal: ev.bytesTotal });
      if (ev.bytesTotal > 0) {
        state.maxProgress.set(f, Math.max(state.maxProgress.get(f) || 0, ev.bytesUploaded / ev.bytesTotal));
      }
      break;
    }
    case "resumed":
      boundary(f);
      if (state.generation > 1) state.resumedAfterReload.add(f);
      break;
    case "retry":
    case "unpaused":
      state.failed.delete(f);
      boundary(f);
      break;
    case "paused":
    case "created":
      boundary(f);
      break;
    case "success": {
      state.failed.delete(f);
      state.success.set(f, (state.success.get(f) || 0) + 1);
      const lp = state.lastProgress.get(f);
      const total = ev.bytesTotal ?? sizes.get(f);
      if (total > 0 && (!lp || lp.bytesUploaded !== total)) {
        check(false, `${f}: success, but the last progress was ${lp ? lp.bytesUploaded : "none"} of ${total}`);
      }
      break;
    }
    case "checksum":
      state.checksum.set(f, ev.checksum);
      break;
    case "cancelled":
      state.cancelled.add(f);
      state.cancelStatus.set(f, ev.status);
      break;
    case "error":
      state.errors.push(`${f}: ${ev.message}`);
      state.failed.set(f, ev.message);
      break;
  }
}

function check(ok, reason) {
  if (!ok) {
    state.checksFailed++;
    out({ event: "check", ok: false, reason });
  }
}

// ---- browser ----
const browser = await chromium.launch({
  executablePath: opt.chromium,
  headless: !opt.headed,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
const page = await context.newPage();
page.on("console", (m) => {
  if (m.type() === "error" || m.type() === "warning") diag(`page console ${m.type()}: ${m.text()}`);
});
page.on("pageerror", (e) => diag(`page error: ${e.message}`));
page.on("dialog", (d) => d.accept().catch(() => {}));
// PUTs to presigned S3 URLs: how many parts the page sent, in which page
// load, and what S3 answered.
const partOf = (u) => {
  const q = new URL(u).searchParams;
  return q.has("X-Amz-Signature") ? Number(q.get("partNumber") || 0) : null;
};
page.on("request", (r) => {
  if (r.method() !== "PUT") return;
  const pn = partOf(r.url());
  if (pn !== null) out({ event: "s3put", partNumber: pn, generation: state.generation });
});
page.on("response", (r) => {
  if (r.request().method() !== "PUT") return;
  const pn = partOf(r.url());
  if (pn !== null) out({ event: "s3stored", partNumber: pn, generation: state.generation, status: r.status() });
});
const cdp = await context.newCDPSession(page);
await cdp.send("Network.enable");

async function applyNetwork(offline = false) {
  await cdp.send("Network.emulateNetworkConditions", {
    offline,
    latency: 0,
    downloadThroughput: -1,
    uploadThroughput: throttle > 0 ? throttle : -1,
  });
}
let offline = false;
if (throttle > 0) await applyNetwork();

let finished = false;
async function finish(ok, reason) {
  if (finished) return;
  finished = true;
  try {
    await poll(); // the last events
  } catch {}
  if (ok && state.checksFailed) {
    ok = false;
    reason = `${state.checksFailed} check(s) failed`;
  }
  out({ event: "done", ok, reason });
  await browser.close().catch(() => {});
  process.exit(ok ? 0 : 1);
}

const deadline = Date.now() + timeoutMs;
const timer = setTimeout(() => {
  finish(false, `timeout after ${timeoutMs} ms (${describeProgress()})`);
}, timeoutMs);
timer.unref();

function describeProgress() {
  return fileNames
    .map((f) => `${f}: ${state.success.get(f) ? "done" : `${Math.round(100 * (state.maxProgress.get(f) || 0))}%`}`)
    .join(", ");
}

// ---- page actions ----
function pageURL() {
  const q = new URLSearchParams();
  if (opt.parallel) q.set("parallel", opt.parallel);
  if (opt.chunk) q.set("chunk", opt.chunk);
  if (opt.ttl) q.set("ttl", opt.ttl);
  if (opt.direct) q.set("direct", "1");
  if (opt["part-size"]) q.set("partSize", opt["part-size"]);
  const qs = q.toString();
  return `${opt.url.replace(/\/$/, "")}/${opt.page}/${qs ? "?" + qs : ""}`;
}

// login waits until the page is authenticated, logging in through the dev
// form if the page asks.
async function login() {
  const wait = (sel, state, result) =>
    page.waitForSelector(sel, { state, timeout: 30000 }).then(
      () => result,
      () => null, // lost the race or timed out: see below
    );
  const which = await Promise.race([
    wait("body[data-authenticated=true]", "attached", "authed"),
    wait("#login-username", "visible", "form"),
    wait("body[data-error=true]", "attached", "error"),
    new Promise((r) => setTimeout(() => r(null), 31000)),
  ]);
  if (which === null) throw new Error("the page neither logged in nor showed a login form within 30 s");
  if (which === "error") {
    throw new Error(`page failed to start: ${await page.textContent("#page-error").catch(() => "?")}`);
  }
  if (which === "form") {
    const mode = await page.getAttribute("body", "data-auth-mode");
    if (mode !== "dev") throw new Error(`the page needs a ${mode} login, which the driver cannot do`);
    await page.fill("#login-username", opt.user);
    await page.click("#login-button");
    await page.waitForSelector("body[data-authenticated=true]", { state: "attached", timeout: 30000 });
  }
}

async function fileInput() {
  if (opt.page === "dropzone") {
    await page.waitForSelector("input.dz-hidden-input", { state: "attached", timeout: 30000 });
    return page.locator("input.dz-hidden-input").last();
  }
  const sel = 'input.uppy-Dashboard-input[type=file][name="files[]"]:not([webkitdirectory])';
  // With files listed (say, restored after a reload) the Dashboard shows
  // its file input only in the "add more" panel.
  const more = ".uppy-DashboardContent-addMore";
  const which = await Promise.race([
    page.waitForSelector(sel, { state: "attached", timeout: 30000 }).then(() => "input"),
    page.waitForSelector(more, { state: "visible", timeout: 30000 }).then(() => "more"),
  ]);
  if (which === "more" && !(await page.locator(sel).count())) {
    await page.click(more);
    await page.waitForSelector(sel, { state: "attached", timeout: 30000 });
  }
  return page.locator(sel).first();
}

async function addFiles(paths) {
  const input = await fileInput();
  await input.setInputFiles(paths);
}

async function poll() {
  const gen = state.generation;
  let events;
  try {
    events = await page.evaluate((n) => (window.tusgateEvents || []).slice(n), state.seen);
  } catch (err) {
    // Navigation in progress: the next poll reads the new page.
    return;
  }
  if (gen !== state.generation) return;
  state.seen += events.length;
  for (const ev of events) onEvent(ev);
}

async function load() {
  state.generation++;
  state.seen = 0;
  for (const f of fileNames) boundary(f);
}

async function reload() {
  await poll(); // what the old page said last
  await load();
  await page.reload({ waitUntil: "domcontentloaded" });
  if (throttle > 0 || offline) await applyNetwork(offline);
  await login();
  out({ event: "reloaded", generation: state.generation });
  const pending = filePaths.filter((p) => !state.success.get(path.basename(p)) && !state.cancelled.has(path.basename(p)));
  if (pending.length) await addFiles(pending);
}

async function rowAction(name, action) {
  if (opt.page === "dropzone") {
    const row = page.locator(`[data-file="${cssEscape(name)}"]`).first();
    await row.locator(`[data-action=${action}]`).click();
    return;
  }
  const item = page.locator(".uppy-Dashboard-Item", { has: page.locator(`.uppy-Dashboard-Item-name[title="${cssEscape(name)}"]`) }).first();
  const target = (await item.count())
    ? item
    : page.locator(".uppy-Dashboard-Item", { hasText: name }).first();
  if (action === "cancel") {
    await target.locator(".uppy-Dashboard-Item-action--remove").click();
  } else {
    // Uppy's one pause/resume toggle.
    await target.locator(".uppy-Dashboard-Item-progressIndicator").click();
  }
}

function cssEscape(s) {
  return s.replace(/["\\]/g, "\\$&");
}

async function screenshot(p) {
  await page.screenshot({ path: p, fullPage: true });
  out({ event: "screenshot", path: p });
}

// ---- stdin commands ----
let busy = Promise.resolve();
const rl = createInterface({ input: process.stdin });
rl.on("line", (line) => {
  const [cmd, ...args] = line.trim().split(/\s+/);
  if (!cmd) return;
  const arg = args.join(" ");
  busy = busy.then(async () => {
    try {
      switch (cmd) {
        case "reload":
          await reload();
          break;
        case "pause":
        case "resume":
        case "cancel":
          await rowAction(arg || first, cmd);
          break;
        case "offline":
        case "online":
          offline = cmd === "offline";
          await applyNetwork(offline);
          break;
        case "throttle":
          throttle = Number(arg) || 0;
          await applyNetwork(offline);
          break;
        case "screenshot":
          await screenshot(arg);
          break;
        default:
          throw new Error(`unknown command ${cmd}`);
      }
      out({ event: "command", command: line.trim(), ok: true });
    } catch (err) {
      out({ event: "command", command: line.trim(), ok: false, reason: err.message });
    }
  });
});
rl.on("close", () => {}); // stdin may close early: keep running

// ---- main ----
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(pred, what) {
  while (!finished) {
    await busy;
    await poll();
    if (pred()) return;
    if (Date.now() > deadline) throw new Error(`timeout waiting for ${what} (${describeProgress()})`);
    await sleep(100);
  }
}

const allDone = () => fileNames.every((f) => state.success.get(f));

// settledWithErrors: every file either succeeded or failed for good, and
// some failed: waiting longer is pointless (a stdin "resume NAME" would
// retry one, so this is checked only while no command runs).
function settledWithErrors() {
  if (!state.failed.size) return false;
  if (!fileNames.every((f) => state.success.get(f) || state.failed.has(f))) return false;
  const why = [...state.failed].map(([f, m]) => `${f}: ${m}`).join("; ");
  throw new Error(`upload failed: ${why}`);
}

async function run() {
  await load();
  await page.goto(pageURL(), { waitUntil: "domcontentloaded" });
  await login();
  out({ event: "ready" });
  await addFiles(filePaths);

  const started = Date.now();
  let extra = "";
  let shot = false;
  const shotCheck = async () => {
    if (opt.screenshot && !shot && (state.maxProgress.get(first) || 0) * 100 >= Number(opt["screenshot-at"])) {
      shot = true;
      await screenshot(opt.screenshot);
    }
  };

  switch (opt.scenario) {
    case "basic":
    case "wait":
      await waitFor(() => {
        shotCheck();
        return allDone() || settledWithErrors();
      }, "every file to succeed");
      if (opt.checksums) {
        await waitFor(() => fileNames.every((f) => state.checksum.has(f)), "every file's checksum");
      }
      break;
    case "cancel": {
      await waitFor(() => (state.maxProgress.get(first) || 0) >= 0.2 || state.success.get(first), `${first} at 20 %`);
      if (state.success.get(first)) throw new Error(`${first} finished before it could be cancelled; use --throttle`);
      await shotCheck();
      await rowAction(first, "cancel");
      await waitFor(() => state.cancelled.has(first), `${first} to be cancelled`);
      if (state.success.get(first)) throw new Error(`${first} succeeded although cancelled`);
      extra = ` (DELETE answered ${state.cancelStatus.get(first) ?? "nothing: no upload yet"})`;
      break;
    }
    case "reload": {
      await waitFor(() => (state.maxProgress.get(first) || 0) >= 0.4 || state.success.get(first), `${first} at 40 %`);
      if (state.success.get(first)) throw new Error(`${first} finished before the reload; use --throttle`);
      await shotCheck();
      await busy;
      await reload();
      await waitFor(() => state.resumedAfterReload.has(first) || allDone(), `a resumed event for ${first}`);
      if (!state.resumedAfterReload.has(first)) throw new Error(`${first} was not resumed after the reload`);
      await waitFor(() => {
        shotCheck();
        return allDone() || settledWithErrors();
      }, "every file to succeed");
      break;
    }
  }
  // Final checks: every successful file ended at its size.
  for (const f of fileNames) {
    if (!state.success.get(f)) continue;
    const lp = state.lastProgress.get(f);
    const size = sizes.get(f);
    if (size > 0 && (!lp || lp.bytesUploaded !== size)) check(false, `${f}: last progress ${lp?.bytesUploaded} of ${size}`);
  }
  const secs = ((Date.now() - started) / 1000).toFixed(1);
  return `${opt.scenario} on ${opt.page}: ${describeProgress()} in ${secs}s${extra}`;
}

run().then(
  (reason) => finish(true, reason),
  (err) => finish(false, err.message),
);
