/* The idle-timeout warning: two minutes before the session ends, offer "Stay signed in" (a request renews it).
   A file, not an inline script: the Content-Security-Policy allows scripts from the site only. */
(function () {
  "use strict";
  var box = document.getElementById("idle-warning");
  if (!box) { return; }
  var timeout = (parseInt(box.getAttribute("data-timeout-s"), 10) || 900) * 1000;
  var warnBefore = Math.min(120000, timeout / 2), warnTimer, outTimer;
  function arm() {
    clearTimeout(warnTimer); clearTimeout(outTimer); box.hidden = true;
    warnTimer = setTimeout(function () { box.hidden = false; document.getElementById("idle-stay").focus(); }, timeout - warnBefore);
    outTimer = setTimeout(function () { window.location.href = "/login?expired=1&next=" + encodeURIComponent(location.pathname + location.search); }, timeout + 1000);
  }
  document.getElementById("idle-stay").addEventListener("click", function () {
    fetch("/session/ping", {credentials: "same-origin"}).then(function (r) { return r.json(); }).then(function (d) {
      if (d.signed_in) { arm(); } else { window.location.href = "/login?expired=1"; }
    });
  });
  arm();
})();
