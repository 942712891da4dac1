// nhi-broker console: the only script (no inline script: the CSP forbids it).
// Live regions: an element with data-sse-src="URL" data-sse-event="NAME" gets its content
// replaced by each event NAME of that server-sent event stream (HTML rendered by the broker).
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("[data-sse-src]").forEach(function (el) {
    var status = el.dataset.sseStatus ? document.getElementById(el.dataset.sseStatus) : null;
    var source = new EventSource(el.dataset.sseSrc);
    source.addEventListener("open", function () {
      el.dataset.live = "on";
      if (status) status.textContent = "(live)";
    });
    source.addEventListener("error", function () {
      el.dataset.live = "off";
      if (status) status.textContent = "(reconnecting…)";
    });
    source.addEventListener(el.dataset.sseEvent || "message", function (event) {
      el.innerHTML = event.data;
      el.dataset.updates = String(Number(el.dataset.updates || "0") + 1);
    });
    source.addEventListener("signed-out", function () {
      source.close();
      window.location.assign("/console/login?next=" + encodeURIComponent(window.location.pathname));
    });
  });
});
