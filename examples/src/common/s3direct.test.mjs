// Unit tests of S3File (node --test; scripts/test.sh runs them) with fake
// fetch and XMLHttpRequest: the races of a page are easier to pin here than
// in a browser.

import { test } from "node:test";
import assert from "node:assert/strict";

globalThis.window = {};
const { S3File } = await import("./s3direct.js");

const MiB = 1024 * 1024;

// FakeXHR records every request; the test drives its events.
class FakeXHR {
  static all = [];
  constructor() {
    this.upload = {};
    this.headers = {};
    FakeXHR.all.push(this);
  }
  open(method, url) {
    Object.assign(this, { method, url });
  }
  setRequestHeader(k, v) {
    this.headers[k] = v;
  }
  send(body) {
    this.body = body;
  }
  abort() {
    this.onabort?.();
  }
  getResponseHeader(name) {
    return name === "ETag" ? this.etag : null;
  }
  finish(etag) {
    this.status = 200;
    this.etag = etag;
    this.onload();
  }
}
globalThis.XMLHttpRequest = FakeXHR;

// fetch answers tusgate's /s3/ routes.
globalThis.fetch = async (path, { method }) => {
  let data = {};
  if (method === "POST" && path === "/s3/multipart") data = { key: "o/d-1", uploadId: "up" };
  else if (method === "GET") data = { url: "https://s3.example/b/o/d-1", headers: {} };
  return { status: 200, ok: true, json: async () => data };
};

// until waits for cond, up to 10 s: the page hashes each part
// (crypto.subtle.digest) on Node's thread pool, which a busy machine
// delays by more than any fixed number of event-loop turns.
async function until(cond) {
  const deadline = performance.now() + 10_000;
  while (!cond() && performance.now() < deadline) await new Promise((r) => setTimeout(r, 1));
  assert.ok(cond(), "timed out after 10 s");
}

// A part finishing while the upload is cancelled must not show less
// progress than before the cancel: the parts in flight were dropped, the
// finished one alone is less than what the bar showed.
test("no progress backwards when a part finishes during a cancel", async () => {
  FakeXHR.all = [];
  const shown = [];
  const ui = { state() {}, progress: (sent) => shown.push(sent), success() {}, error() {} };
  const auth = { getToken: async () => "t", invalidate() {} };
  const file = new File([new Uint8Array(20 * MiB)], "a.bin");
  const s = new S3File(file, { auth, partSize: 5 * MiB, partsAtOnce: 3, ui });
  const started = s.start();
  await until(() => FakeXHR.all.length === 3);
  const [x1, x2, x3] = FakeXHR.all;
  x1.upload.onprogress({ loaded: 4 * MiB });
  x2.upload.onprogress({ loaded: 4 * MiB });
  x3.upload.onprogress({ loaded: 4 * MiB });
  x1.finish('"e1"'); // its promise settles after the cancel below began
  await s.cancel();
  await started;
  for (let i = 1; i < shown.length; i++) {
    assert.ok(shown[i] >= shown[i - 1], `progress went back from ${shown[i - 1]} to ${shown[i]}: ${shown}`);
  }
  assert.equal(s.state, "cancelled");
});
