// Formatting of sizes, rates and durations, and a moving-window speed meter.

export function formatBytes(n) {
  if (n == null || !Number.isFinite(n)) return "–";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)} ${units[i]}`;
}

export function formatDuration(s) {
  if (s == null || !Number.isFinite(s)) return "–";
  s = Math.max(0, Math.round(s));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  if (h) return `${h} h ${String(m).padStart(2, "0")} min`;
  if (m) return `${m} min ${String(sec).padStart(2, "0")} s`;
  return `${sec} s`;
}

// RateMeter estimates the upload speed over the last few seconds.
export class RateMeter {
  constructor(windowMs = 5000) {
    this.windowMs = windowMs;
    this.samples = [];
  }

  reset() {
    this.samples = [];
  }

  add(bytes, t = performance.now()) {
    const last = this.samples[this.samples.length - 1];
    if (last && bytes < last.bytes) this.samples = []; // went back: a retry
    this.samples.push({ t, bytes });
    while (this.samples.length > 2 && t - this.samples[0].t > this.windowMs) this.samples.shift();
  }

  // bytes per second, or null while there is too little to tell
  rate() {
    if (this.samples.length < 2) return null;
    const a = this.samples[0];
    const b = this.samples[this.samples.length - 1];
    const dt = (b.t - a.t) / 1000;
    if (dt < 0.3) return null;
    return (b.bytes - a.bytes) / dt;
  }
}

export function progressText(uploaded, total, rate) {
  const speed = rate == null ? "– MB/s" : `${(rate / 1e6).toFixed(rate < 1e7 ? 2 : 1)} MB/s`;
  const left = rate ? formatDuration((total - uploaded) / rate) + " left" : "– left";
  return `${formatBytes(uploaded)} / ${formatBytes(total)} · ${speed} · ${left}`;
}

export function queryParams() {
  const q = new URLSearchParams(location.search);
  const int = (name, def) => {
    const v = Number.parseInt(q.get(name) ?? "", 10);
    return Number.isFinite(v) && v > 0 ? v : def;
  };
  return {
    parallel: int("parallel", 3),
    chunkSize: int("chunk", Number.POSITIVE_INFINITY),
    ttl: q.get("ttl") || "",
    // Direct uploads to S3: part size, and the size above which a file
    // goes in parts rather than in one PUT (@uppy/aws-s3's default).
    partSize: Math.max(int("partSize", 5 * 1024 * 1024), 5 * 1024 * 1024),
    multipartAbove: int("multipartAbove", 100 * 1024 * 1024),
    direct: q.get("direct") === "1", // Dropzone: start with "Straight to S3" on
  };
}
