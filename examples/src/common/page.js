// Small page helpers shared by the examples.

// watchOnline shows #offline-banner while the browser is offline.
export function watchOnline() {
  const banner = document.getElementById("offline-banner");
  if (!banner) return;
  const update = () => {
    banner.hidden = navigator.onLine !== false;
  };
  window.addEventListener("online", update);
  window.addEventListener("offline", update);
  update();
}

// showPageError reports a failure that stops the page from working.
export function showPageError(err) {
  console.error(err);
  const el = document.getElementById("page-error");
  if (el) {
    el.textContent = `This page cannot start: ${err?.message || err}`;
    el.hidden = false;
  }
  document.body.dataset.error = "true";
}
