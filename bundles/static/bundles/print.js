/* The Print button of the readable record view (hidden without JavaScript). */
(function () {
  "use strict";
  var b = document.getElementById("print-button");
  if (b) { b.hidden = false; b.addEventListener("click", function () { window.print(); }); }
}());
