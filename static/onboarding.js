// The success page: polls provisioning progress, shows the first key once, offers a retry.
"use strict";
const page = document.getElementById("progress");
const sid = page.dataset.sessionId;
const tid = page.dataset.tenantId;
const labels = {namespace: "Vector namespace", api_key: "API key", sample_data: "Sample documents", welcome_email: "Welcome email"};
let timer = null;
async function poll() {
  let r;
  try { r = await fetch("/onboarding/status?session_id=" + encodeURIComponent(sid)); } catch (e) { return; }
  if (!r.ok) return;
  const p = await r.json();
  const ol = document.getElementById("steps");
  ol.replaceChildren(...p.steps.map((s) => {
    const li = document.createElement("li");
    const name = document.createElement("span"); name.textContent = labels[s.step] || s.step;
    const st = document.createElement("span"); st.className = s.state; st.textContent = s.state;
    li.append(name, st); return li;
  }));
  if (p.api_key) { document.getElementById("keyvalue").textContent = p.api_key; document.getElementById("key").classList.remove("hidden"); }
  document.getElementById("notices").replaceChildren(...p.notices.map((n) => { const d = document.createElement("p"); d.textContent = n; return d; }));
  const failed = p.status === "failed";
  document.getElementById("failed").classList.toggle("hidden", !failed);
  if (failed) document.getElementById("reason").textContent = "Setup failed: " + (p.status_reason || "unknown error");
  if (p.status === "active") {
    document.getElementById("headline").textContent = "Your workspace is ready.";
    document.getElementById("next").classList.remove("hidden");
    clearInterval(timer);
  }
}
document.getElementById("retry").addEventListener("click", async () => {
  await fetch("/tenant/" + encodeURIComponent(tid) + "/retry?session_id=" + encodeURIComponent(sid), {method: "POST"});
  poll();
});
poll();
timer = setInterval(poll, 1000);
