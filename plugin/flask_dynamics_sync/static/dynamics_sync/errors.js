/* Sync Errors list: select-all checkbox, tidy filter URLs, a guard against acting on nothing.
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

  // Empty filters mean "any": leave them out of the URL.
  var filterBar = document.getElementById("ds-filter-bar");
  if (filterBar) {
    filterBar.addEventListener("submit", function () {
      Array.prototype.forEach.call(filterBar.elements, function (field) {
        if (field.name && field.value === "") { field.disabled = true; }
      });
    });
    // Coming back through the history shows the form as it was left: enable it again.
    window.addEventListener("pageshow", function () {
      Array.prototype.forEach.call(filterBar.elements, function (field) { field.disabled = false; });
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
