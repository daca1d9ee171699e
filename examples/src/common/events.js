// The event log that browser tests read: window.tusgateEvents is an array of
// plain objects, appended to in order and never rewritten.
//
// Every event has: type, file (the file's name), bytesUploaded, bytesTotal,
// url (the tus upload URL, or null before it is known) and t (Date.now()).
// Some types add fields: error → message, status; retry → status, attempt,
// message, restart; cancelled → status (of the DELETE) ...
//
// Types: created, resumed, progress, success, error, cancelled, paused,
// unpaused, retry (see examples/README.md for when each is pushed).

const log = (window.tusgateEvents = window.tusgateEvents || []);

// Minimum spacing of progress events per file; the first and the final
// (bytesUploaded === bytesTotal) progress event of a file always go out.
const PROGRESS_INTERVAL_MS = 200;
const lastProgress = new Map();

export function pushEvent(type, fields) {
  const ev = {
    type,
    file: fields.file ?? null,
    bytesUploaded: fields.bytesUploaded ?? null,
    bytesTotal: fields.bytesTotal ?? null,
    url: fields.url ?? null,
    t: Date.now(),
  };
  for (const [k, v] of Object.entries(fields)) {
    if (!(k in ev) && v !== undefined) ev[k] = v;
  }
  if (type === "progress") {
    const key = fields.key ?? ev.file;
    const prev = lastProgress.get(key);
    const final = ev.bytesUploaded === ev.bytesTotal;
    if (prev && !final && ev.t - prev.t < PROGRESS_INTERVAL_MS && ev.bytesUploaded >= prev.bytes) {
      return;
    }
    lastProgress.set(key, { t: ev.t, bytes: ev.bytesUploaded });
  } else {
    // Anything else may start a new run of progress for the file: let the
    // next progress event through at once.
    lastProgress.delete(fields.key ?? ev.file);
  }
  delete ev.key;
  log.push(ev);
  return ev;
}
