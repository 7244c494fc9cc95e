// app.js: the console's entry: login (token in sessionStorage), the hash router
// (#/overview, #/devices, #/devices/{id}, #/products, #/products/{id}) and the page life cycle
// (each view returns a cleanup that stops its timers and stream).
import { api, login, onUnauthorized, session } from "./api.js";
import { clear, h } from "./dom.js";
import { overviewView } from "./overview.js";
import { devicesView } from "./devices.js";
import { deviceView } from "./device.js";
import { productsView, productView } from "./products.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const who = document.getElementById("who");
const logoutBtn = document.getElementById("logout");
let cleanup = null;

function stopView() {
  if (cleanup) {
    try { cleanup(); } catch (e) { /* a view's cleanup must not stop navigation */ }
    cleanup = null;
  }
}

function showLogin(message) {
  stopView();
  nav.hidden = true;
  logoutBtn.hidden = true;
  who.textContent = "";
  clear(main);
  const input = h("input", { id: "token", type: "password", name: "token", required: true,
                             autocomplete: "current-password", spellcheck: "false" });
  const err = h("p.error", { role: "alert", id: "login-error" }, message || "");
  const btn = h("button", { type: "submit", id: "login-btn" }, "Log in");
  const form = h("form.card.login", {
    onsubmit: async (e) => {
      e.preventDefault();
      btn.disabled = true;
      err.textContent = "";
      try {
        const tok = input.value.trim();
        const role = await login(tok);
        session.save(tok, role);
        if (!location.hash || location.hash === "#/login") location.hash = "#/overview";
        route();
      } catch (ex) {
        err.textContent = ex.status === 401 ? "This token is not accepted." : ex.message;
      } finally {
        btn.disabled = false;
      }
    },
  },
  h("h1", { text: "iotgw console" }),
  h("label", { for: "token" }, "API token"),
  input,
  h("p.hint", null, "A token of the gateway's admin.tokens (role read or admin). " +
    "It is kept in this tab only (sessionStorage)."),
  btn, err);
  main.append(form);
  input.focus();
}

function logout() {
  session.clear();
  showLogin();
}

onUnauthorized(() => {
  if (session.token) {
    session.clear();
    showLogin("The token is no longer accepted; log in again.");
  }
});
logoutBtn.addEventListener("click", logout);
// The skip link moves the focus to the content without touching the hash (the router's).
document.querySelector(".skip").addEventListener("click", (e) => {
  e.preventDefault();
  main.focus();
});

function setNav(section) {
  for (const a of nav.querySelectorAll("a")) {
    if (a.dataset.nav === section) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

async function route() {
  if (!session.token) { showLogin(); return; }
  stopView();
  nav.hidden = false;
  logoutBtn.hidden = false;
  who.textContent = session.canWrite ? "admin" : "read only";
  who.title = session.canWrite ? "admin token: writes allowed" : "read token: no write controls";
  const parts = (location.hash || "#/overview").split("?")[0].slice(2).split("/").map(decodeURIComponent);
  const view = h("div.view");
  clear(main).append(view);
  let section = parts[0] || "overview";
  try {
    if (section === "devices" && parts.length > 1) cleanup = deviceView(view, parts.slice(1).join("/"));
    else if (section === "devices") cleanup = devicesView(view);
    else if (section === "products" && parts.length > 1) cleanup = productView(view, parts[1]);
    else if (section === "products") cleanup = productsView(view);
    else { section = "overview"; cleanup = overviewView(view); }
  } catch (e) {
    view.append(h("p.error", { role: "alert" }, String(e.message || e)));
  }
  setNav(section);
  document.title = `iotgw · ${section}`;
}

window.addEventListener("hashchange", () => {
  if (location.hash.startsWith("#/") || !location.hash) route();
});
route();

// Keeps the API object reachable for debugging from the devtools console.
window.iotgw = { api, session };
