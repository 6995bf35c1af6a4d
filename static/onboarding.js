// The success page: polls provisioning progress, shows the first key once with a copy button,
// retries a failed setup in place. Without JavaScript the page refreshes itself and the retry
// is a plain form.
"use strict";
const page = document.getElementById("progress");
const sid = page.dataset.sessionId;
const labels = {namespace: "Vector namespace", api_key: "API key", sample_data: "Sample documents", welcome_email: "Welcome email"};
let timer = null;
function show(id, visible) { document.getElementById(id).classList.toggle("hidden", !visible); }
async function poll() {
  let r;
  try { r = await fetch("/onboarding/status?session_id=" + encodeURIComponent(sid)); } catch (e) { return; }
  if (!r.ok) return;
  const p = await r.json();
  const done = p.steps.filter((s) => s.state === "done" || s.state === "skipped").length;
  const bar = document.getElementById("bar");
  bar.max = p.steps.length; bar.value = done; bar.textContent = done + " of " + p.steps.length;
  document.getElementById("bar-text").textContent = done + " of " + p.steps.length + " steps";
  document.getElementById("steps").replaceChildren(...p.steps.map((s) => {
    const li = document.createElement("li");
    const name = document.createElement("span"); name.textContent = labels[s.step] || s.step;
    const st = document.createElement("span"); st.className = "state-" + s.state; st.textContent = s.state;
    li.append(name, st); return li;
  }));
  if (p.api_key) { document.getElementById("keyvalue").textContent = p.api_key; show("key", true); }
  document.getElementById("notices").replaceChildren(...p.notices.map((n) => { const d = document.createElement("p"); d.className = "notice"; d.textContent = n; return d; }));
  const failed = p.status === "failed";
  show("failed", failed);
  if (failed) document.getElementById("reason").textContent = "Setup failed: " + (p.status_reason || "unknown error");
  const headline = document.getElementById("headline");
  if (p.status === "active") {
    headline.textContent = "Your workspace is ready.";
    show("next", true);
    clearInterval(timer);
  } else if (failed) {
    headline.textContent = "Setup stopped before it finished.";
  } else {
    headline.textContent = "Payment received. We are setting up your workspace…";
  }
}
document.getElementById("copy").addEventListener("click", async () => {
  const key = document.getElementById("keyvalue").textContent;
  const said = document.getElementById("copied");
  try {
    await navigator.clipboard.writeText(key);
  } catch (e) {
    // No clipboard permission: select the key so that Ctrl+C copies it.
    const range = document.createRange(); range.selectNodeContents(document.getElementById("keyvalue"));
    const sel = window.getSelection(); sel.removeAllRanges(); sel.addRange(range);
    said.textContent = "Selected: press Ctrl+C (or ⌘C) to copy.";
    return;
  }
  document.getElementById("copy").textContent = "Copied";
  said.textContent = "The key is on your clipboard.";
});
document.querySelector("#failed form").addEventListener("submit", async (e) => {
  e.preventDefault();
  // Not following the answer's redirect: loading the success page would show (and so use up)
  // the key the retry is about to make, into a response nobody reads.
  await fetch("/onboarding/retry", {method: "POST", redirect: "manual", headers: {"Content-Type": "application/x-www-form-urlencoded"}, body: "session_id=" + encodeURIComponent(sid)});
  show("failed", false);
  document.getElementById("headline").textContent = "Retrying the setup…";
  clearInterval(timer);
  timer = setInterval(poll, 1000);
  poll();
});
poll();
timer = setInterval(poll, 1000);
