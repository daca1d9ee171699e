// The index page: shows which login mode /config.json announces.
import { describeAuthMode, loadConfig } from "./common/config.js";
import { formatBytes } from "./common/format.js";
import { showPageError } from "./common/page.js";

loadConfig()
  .then((cfg) => {
    document.body.dataset.authMode = cfg.auth.mode;
    document.getElementById("auth-mode").textContent = describeAuthMode(cfg);
    document.getElementById("endpoint").textContent = new URL(cfg.endpoint, location.href).href;
    document.getElementById("max-size").textContent = cfg.maxSize > 0 ? formatBytes(cfg.maxSize) : "no limit";
  })
  .catch(showPageError);
