// The operator console's one script, a progressive touch: a button with data-confirm asks
// before its form is sent (suspend, retry a job). Every form works without it.
(function () {
  document.addEventListener("submit", function (e) {
    var message = e.submitter && e.submitter.getAttribute("data-confirm");
    if (message && !window.confirm(message)) e.preventDefault();
  });
})();
