/* Sync Errors list: select-all checkbox and a guard against acting on nothing.
   Everything works without this script; it only saves a round trip. */
(function () {
  "use strict";

  function rowChecks() {
    return Array.prototype.slice.call(document.querySelectorAll("input.ds-row-check"));
  }

  var toggle = document.querySelector("input.ds-toggle-all");
  if (toggle) {
    toggle.addEventListener("change", function () {
      rowChecks().forEach(function (box) { box.checked = toggle.checked; });
    });
    rowChecks().forEach(function (box) {
      box.addEventListener("change", function () {
        toggle.checked = rowChecks().every(function (b) { return b.checked; });
      });
    });
  }

  var selectedForm = document.getElementById("ds-action-selected");
  if (selectedForm) {
    selectedForm.addEventListener("submit", function (event) {
      if (!rowChecks().some(function (box) { return box.checked; })) {
        event.preventDefault();
        window.alert(selectedForm.getAttribute("data-empty-message"));
      }
    });
  }
})();
