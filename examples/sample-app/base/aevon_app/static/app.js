// ΛΞVON sample app page: talks to the api role through the web role's /api/* proxy.
"use strict";

const state = { token: sessionStorage.getItem("aevon-token"), user: sessionStorage.getItem("aevon-user") };
const $ = (id) => document.getElementById(id);

async function api(method, path, body) {
  const headers = { "Accept": "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (state.token) headers["Authorization"] = "Bearer " + state.token;
  const res = await fetch("/api" + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await res.json().catch(() => ({}));
  if (res.status === 401 && path !== "/auth/login") showLogin();
  if (!res.ok) throw new Error(data.error || ("HTTP " + res.status));
  return data;
}

function showError(id, err) {
  const el = $(id);
  el.textContent = err ? err.message : "";
  el.hidden = !err;
}

function showLogin() {
  state.token = null;
  sessionStorage.removeItem("aevon-token");
  $("login-section").hidden = false;
  $("app-section").hidden = true;
}

async function showApp() {
  $("login-section").hidden = true;
  $("app-section").hidden = false;
  $("session-user").textContent = state.user || "";
  await Promise.all([loadTasks(), loadWorkflows()]);
}

function taskFields() {
  // extra task fields the server rendered into the form (v2: priority)
  return Array.from(document.querySelectorAll("#task-form [data-field]"));
}

function renderTask(task) {
  const li = document.createElement("li");
  li.dataset.testid = "task-item";
  li.dataset.taskId = task.id;
  const title = document.createElement("span");
  title.className = "task-title";
  title.textContent = task.title;
  li.append(title);
  for (const input of taskFields()) {
    const badge = document.createElement("span");
    badge.className = "badge task-" + input.dataset.field;
    badge.textContent = task[input.dataset.field];
    li.append(badge);
  }
  return li;
}

async function loadTasks() {
  const { tasks } = await api("GET", "/tasks");
  $("task-list").replaceChildren(...tasks.map(renderTask));
  const select = $("workflow-task");
  const options = tasks.map((t) => new Option(t.title, t.id));
  select.replaceChildren(new Option("(none)", ""), ...options);
}

async function loadWorkflows() {
  const { runs } = await api("GET", "/workflows");
  $("workflow-list").replaceChildren(...runs.map((run) => {
    const li = document.createElement("li");
    li.dataset.testid = "workflow-item";
    li.textContent = `#${run.id} ${run.name}: ${run.status}`;
    return li;
  }));
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const out = await api("POST", "/auth/login", { email: $("login-email").value, password: $("login-password").value });
      state.token = out.token;
      state.user = out.user.email;
      sessionStorage.setItem("aevon-token", out.token);
      sessionStorage.setItem("aevon-user", out.user.email);
      showError("login-error", null);
      await showApp();
    } catch (err) {
      showError("login-error", err);
    }
  });

  $("logout").addEventListener("click", async () => {
    await api("POST", "/auth/logout").catch(() => {});
    showLogin();
  });

  $("task-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { title: $("task-title").value };
    for (const input of taskFields()) body[input.dataset.field] = input.value;
    try {
      await api("POST", "/tasks", body);
      $("task-title").value = "";
      showError("task-error", null);
      await loadTasks();
    } catch (err) {
      showError("task-error", err);
    }
  });

  $("workflow-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const taskId = $("workflow-task").value;
    try {
      const run = await api("POST", "/workflows/trigger", { name: $("workflow-name").value, taskId: taskId ? Number(taskId) : null });
      $("workflow-result").textContent = `Workflow run #${run.id} ${run.status}`;
      $("workflow-result").dataset.runId = run.id;
      await loadWorkflows();
    } catch (err) {
      $("workflow-result").textContent = "Error: " + err.message;
    }
  });

  if (state.token) showApp().catch(() => showLogin());
});
