/* CareSpace portal progressive enhancement: lab history disclosure without a page load.
   Without JavaScript the same buttons submit a GET form that renders the row expanded. */
(function () {
  "use strict";
  document.querySelectorAll("button.disclose[aria-controls]").forEach(function (btn) {
    btn.addEventListener("click", function (ev) {
      var panel = document.getElementById(btn.getAttribute("aria-controls"));
      if (!panel) { return; }
      ev.preventDefault();
      var open = btn.getAttribute("aria-expanded") === "true";
      btn.setAttribute("aria-expanded", open ? "false" : "true");
      panel.hidden = open;
    });
  });
  document.addEventListener("keydown", function (ev) {
    if (ev.key !== "Escape") { return; }
    document.querySelectorAll("details.usermenu[open]").forEach(function (d) {
      d.open = false; var s = d.querySelector("summary"); if (s) { s.focus(); }
    });
  });
})();
