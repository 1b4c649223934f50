/* The password rules, ticked off while typing, and the "do not match" check (the server checks them again).
   A file, not an inline script: the Content-Security-Policy allows scripts from the site only. */
(function () {
  "use strict";
  var list = document.getElementById("pw-rules");
  var pw = document.getElementById("password"), cf = document.getElementById("confirm");
  if (!list || !pw || !cf) { return; }
  var checks = [function (p) { return p.length >= 8; }, function (p) { return /[A-Z]/.test(p); },
                function (p) { return /[a-z]/.test(p); }, function (p) { return /[0-9]/.test(p); },
                function (p) { return /[^A-Za-z0-9]/.test(p); }];
  var texts = JSON.parse(list.getAttribute("data-rules") || "[]");
  var items = list.querySelectorAll("li"), match = document.getElementById("pw-match");
  function update() {
    var p = pw.value, failed = [];
    checks.forEach(function (check, i) {
      if (!items[i]) { return; }
      var ok = check(p);
      items[i].textContent = (ok ? "\u2713 Has " : "\u2717 Needs ") + texts[i];
      items[i].className = ok ? "ok" : "error-text";
      if (!ok) { failed.push(texts[i]); }
    });
    pw.setCustomValidity(failed.length ? "Your password needs " + failed.join(", ") + "." : "");
    var mismatch = cf.value && cf.value !== p;
    match.textContent = mismatch ? "The two passwords do not match." : "";
    cf.setCustomValidity(mismatch ? "The two passwords do not match." : "");
  }
  pw.addEventListener("input", update);
  cf.addEventListener("input", update);
})();
