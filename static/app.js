// The workspace and setup pages' progressive touches; every form works without them.
// - Drag and drop (or choose) a text file onto the upload form: its text and name fill the form.
// - Copy buttons (data-copy="<id of the element to copy>") say what happened.
// - A button with data-confirm asks before its form is sent.
"use strict";
(function () {
  document.querySelectorAll("[data-dropzone]").forEach(function (form) {
    var zone = form.querySelector("[data-drop-target]");
    var input = form.querySelector("[data-file-input]");
    var title = form.querySelector("[name=title]");
    var content = form.querySelector("[name=content]");
    function load(file) {
      if (!file) return;
      file.text().then(function (text) {
        content.value = text;
        // A Markdown heading titles the document (the server takes it); else the file's name.
        var first = (text.split("\n").find(function (l) { return l.trim(); }) || "").trim();
        if (!title.value && first.charAt(0) !== "#") title.value = file.name.replace(/\.(txt|md|markdown)$/i, "");
        form.requestSubmit();
      });
    }
    ["dragenter", "dragover"].forEach(function (t) {
      zone.addEventListener(t, function (e) { e.preventDefault(); zone.classList.add("over"); });
    });
    ["dragleave", "drop"].forEach(function (t) {
      zone.addEventListener(t, function () { zone.classList.remove("over"); });
    });
    zone.addEventListener("drop", function (e) {
      e.preventDefault();
      load(e.dataTransfer.files[0]);
    });
    input.addEventListener("change", function () { load(input.files[0]); });
  });
  document.querySelectorAll("[data-copy]").forEach(function (button) {
    var id = button.getAttribute("data-copy");
    var said = document.querySelector('[data-copied-for="' + id + '"]');
    button.addEventListener("click", function () {
      var text = document.getElementById(id).textContent;
      navigator.clipboard.writeText(text).then(function () {
        button.textContent = "Copied";
        if (said) said.textContent = "Copied to your clipboard.";
      }, function () {
        var range = document.createRange();
        range.selectNodeContents(document.getElementById(id));
        var sel = window.getSelection(); sel.removeAllRanges(); sel.addRange(range);
        if (said) said.textContent = "Selected: press Ctrl+C (or ⌘C) to copy.";
      });
    });
  });
  document.addEventListener("submit", function (e) {
    var message = e.submitter && e.submitter.getAttribute("data-confirm");
    if (message && !window.confirm(message)) e.preventDefault();
  });
})();
