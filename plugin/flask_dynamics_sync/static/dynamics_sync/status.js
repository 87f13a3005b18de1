/*
 * Flask-Dynamics-Sync: behaviour of the Sync Status pages.
 *
 * A static file loaded with the host's CSP nonce: no inline script, no eval,
 * no inline style. Everything here is an enhancement; without JavaScript the
 * rows still link to their details and the View form has a submit button.
 */
(function () {
  "use strict";

  var STORAGE_KEY = "dynamics_sync.status.autoRefresh";

  function each(selector, callback) {
    Array.prototype.forEach.call(document.querySelectorAll(selector), callback);
  }

  function closestRow(node) {
    while (node && node !== document) {
      if (node.nodeType === 1 && node.matches("tr[data-ds-href]")) {
        return node;
      }
      node = node.parentNode;
    }
    return null;
  }

  // Double-clicking a row opens its details, as the object's link does.
  // Delegated, so rows replaced by the auto-refresh keep working.
  document.addEventListener("dblclick", function (event) {
    var row = closestRow(event.target);
    if (row) {
      window.getSelection && window.getSelection().removeAllRanges();
      window.location.assign(row.getAttribute("data-ds-href"));
    }
  });

  // View selector: switch as soon as a view is picked.
  each("select[data-ds-autosubmit]", function (select) {
    select.addEventListener("change", function () {
      select.form.submit();
    });
  });
  each(".ds-js-hide", function (el) { el.classList.add("d-none"); });
  each(".ds-js-show", function (el) { el.classList.remove("d-none"); });

  // Opt-in auto-refresh: fetch this very URL and swap the live regions.
  var checkbox = document.getElementById("ds-auto-refresh");
  var root = document.getElementById("ds-status");
  if (!checkbox || !root || !window.fetch || !window.DOMParser) {
    return;
  }
  var seconds = parseInt(checkbox.getAttribute("data-ds-interval"), 10) || 30;
  var timer = null;
  var busy = false;

  function remember(on) {
    try {
      window.localStorage.setItem(STORAGE_KEY, on ? "1" : "0");
    } catch (e) { /* storage disabled: the choice lasts for this page only */ }
  }

  function remembered() {
    try {
      return window.localStorage.getItem(STORAGE_KEY) === "1";
    } catch (e) {
      return false;
    }
  }

  function swapLiveRegions(html) {
    var fresh = new DOMParser().parseFromString(html, "text/html");
    each("[data-ds-live][id]", function (region) {
      var replacement = fresh.getElementById(region.id);
      if (!replacement) {
        return;
      }
      while (region.firstChild) {
        region.removeChild(region.firstChild);
      }
      while (replacement.firstChild) {
        region.appendChild(document.adoptNode(replacement.firstChild));
      }
    });
  }

  function refresh() {
    if (busy || document.hidden) {
      return;
    }
    busy = true;
    window.fetch(window.location.href, {
      credentials: "same-origin",
      cache: "no-store",
      headers: { "X-Requested-With": "XMLHttpRequest" }
    }).then(function (response) {
      if (!response.ok) {
        throw new Error("HTTP " + response.status);
      }
      return response.text();
    }).then(function (html) {
      swapLiveRegions(html);
      root.classList.remove("ds-stale");
      root.dispatchEvent(new CustomEvent("ds:refreshed", { bubbles: true }));
    }).catch(function () {
      root.classList.add("ds-stale");
    }).then(function () {
      busy = false;
    });
  }

  function apply(on) {
    if (timer !== null) {
      window.clearInterval(timer);
      timer = null;
    }
    if (on) {
      timer = window.setInterval(refresh, seconds * 1000);
    }
  }

  checkbox.checked = remembered();
  apply(checkbox.checked);
  checkbox.addEventListener("change", function () {
    remember(checkbox.checked);
    apply(checkbox.checked);
    if (checkbox.checked) {
      refresh();
    }
  });
}());
