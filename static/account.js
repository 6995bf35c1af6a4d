// The account page's "Close my account" button: DELETE /account after a confirmation.
(function () {
  var button = document.getElementById("close-account");
  if (!button) return;
  var result = document.getElementById("close-result");
  button.addEventListener("click", function () {
    if (!window.confirm(button.getAttribute("data-confirm"))) return;
    button.disabled = true;
    fetch("/account", { method: "DELETE", credentials: "same-origin" })
      .then(function (r) { return r.json().then(function (body) { return { ok: r.ok, body: body }; }); })
      .then(function (r) {
        if (r.ok) {
          result.textContent = r.body.message;
          window.setTimeout(function () { window.location.reload(); }, 1500);
        } else {
          result.textContent = (r.body.error && r.body.error.message) || "Closing the account failed; please try again.";
          button.disabled = false;
        }
      })
      .catch(function () {
        result.textContent = "Closing the account failed; please try again.";
        button.disabled = false;
      });
  });
})();
