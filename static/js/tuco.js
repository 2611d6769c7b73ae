// Small behaviours for the dashboard; everything else is htmx attributes.
(function () {
  "use strict";

  function flash(text, kind) {
    var region = document.getElementById("flash");
    if (!region) return;
    var note = document.createElement("div");
    note.className = "notice notice-" + (kind || "error");
    note.textContent = text;
    region.appendChild(note);
    setTimeout(function () { note.remove(); }, 8000);
  }

  document.addEventListener("htmx:responseError", function (event) {
    var xhr = event.detail.xhr;
    var message = xhr.getResponseHeader("X-Error-Message");
    flash(message || "Something went wrong (" + xhr.status + "). Please try again.");
  });
  document.addEventListener("htmx:sendError", function () {
    flash("The server could not be reached. Check your connection and try again.");
  });

  // Copy buttons: <button data-copy="#selector">.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) return;
    var source = document.querySelector(button.getAttribute("data-copy"));
    if (!source || !navigator.clipboard) return;
    navigator.clipboard.writeText(source.textContent.trim()).then(function () {
      button.textContent = "Copied";
    });
  });

  // Row selection: a header checkbox [data-select-all="name"] toggles every
  // checkbox called name; [data-selection-count] shows how many are ticked.
  function updateSelection(form) {
    if (!form) return;
    var boxes = form.querySelectorAll("input[type=checkbox][name=lead]");
    var ticked = 0;
    boxes.forEach(function (box) { if (box.checked) ticked += 1; });
    var all = form.querySelector("[data-select-all]");
    if (all) {
      all.checked = boxes.length > 0 && ticked === boxes.length;
      all.indeterminate = ticked > 0 && ticked < boxes.length;
    }
    var matching = form.querySelector("input[name=all_matching]");
    var everything = matching && matching.checked;
    form.querySelectorAll("[data-selection-count]").forEach(function (el) {
      el.textContent = everything ? el.getAttribute("data-total-label") : ticked + " selected";
    });
    form.querySelectorAll("[data-needs-selection]").forEach(function (el) {
      el.disabled = !(everything || ticked > 0);
    });
  }

  document.addEventListener("change", function (event) {
    var target = event.target;
    var form = target.form;
    if (target.matches("[data-select-all]")) {
      form.querySelectorAll("input[type=checkbox][name=lead]").forEach(function (box) {
        box.checked = target.checked;
      });
    }
    if (target.matches("input[type=checkbox]")) updateSelection(form);
  });

  document.addEventListener("htmx:afterSettle", function (event) {
    var form = event.target.closest && event.target.closest("form");
    updateSelection(form);
  });

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("form[data-selection]").forEach(updateSelection);
  });
})();
