// /config.json: the upload endpoint, the size limit and the login mode.

export async function loadConfig() {
  const res = await fetch("/config.json", { cache: "no-store" });
  if (!res.ok) throw new Error(`GET /config.json answered ${res.status}`);
  const cfg = await res.json();
  cfg.auth = cfg.auth || { mode: "none" };
  return cfg;
}

// describeAuthMode says in words how one logs in to this server.
export function describeAuthMode(cfg) {
  const a = cfg.auth;
  if (a.mode === "dev") return "development mode: log in with any user name (tokens from tusgate's built-in issuer)";
  if (a.mode === "auth0") return `OpenID login with ${a.domain}`;
  return "no login (authentication is off)";
}
