// Outpost web UI: copy buttons, typed confirmations, and live regions fed by server-sent events.
// The pages work without this script; it only saves reloads.
(function () {
  "use strict";

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    return new Promise(function (resolve, reject) {
      var area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.className = "offscreen";
      document.body.appendChild(area);
      area.select();
      var ok = false;
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      document.body.removeChild(area);
      if (ok) { resolve(); } else { reject(new Error("copy refused")); }
    });
  }

  function say(button, text) {
    var original = button.dataset.label || button.textContent;
    button.dataset.label = original;
    button.textContent = text;
    setTimeout(function () { button.textContent = original; }, 2500);
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) { return; }
    var source = document.querySelector(button.getAttribute("data-copy"));
    if (!source) { return; }
    var text = source.tagName === "INPUT" ? source.value : source.textContent;
    copyText(text).then(function () { say(button, "Copied"); }, function () {
      if (source.select) { source.select(); }
      say(button, "Press Ctrl+C to copy");
    });
  });

  // A destructive form whose button works only once its subject's name is typed (the server checks too).
  document.querySelectorAll("form[data-confirm-text]").forEach(function (form) {
    var input = form.querySelector("input[name=confirm]");
    var button = form.querySelector("button[type=submit]");
    var expected = form.getAttribute("data-confirm-text").trim();
    function sync() { button.disabled = input.value.trim() !== expected; }
    input.addEventListener("input", sync);
    sync();
  });

  function replaceKeepingFocus(element, html) {
    var active = document.activeElement;
    var key = null;
    if (active && element.contains(active)) {
      var form = active.closest("form");
      key = active.id ? "#" + active.id : (form ? "form[action='" + form.getAttribute("action") + "'] button" : null);
    }
    element.innerHTML = html;
    if (key) {
      var again = element.querySelector(key);
      if (again) { again.focus(); }
    }
  }

  function appendLog(pre, text) {
    var atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
    pre.appendChild(document.createTextNode(text));
    pre.dataset.events = String(Number(pre.dataset.events || "0") + 1);
    if (atBottom) { pre.scrollTop = pre.scrollHeight; }
  }

  function stopped(element, text) {
    var note = document.createElement("p");
    note.className = "hint";
    note.setAttribute("role", "status");
    note.textContent = text;
    element.parentNode.insertBefore(note, element);
  }

  document.querySelectorAll("[data-live]").forEach(function (element) {
    if (element.dataset.final === "true" || !window.EventSource) { return; }
    var source = new EventSource(element.getAttribute("data-live"));
    element.dataset.connected = "true";
    source.addEventListener(element.getAttribute("data-live-event"), function (event) {
      replaceKeepingFocus(element, event.data);
    });
    source.addEventListener("log", function (event) {
      var message = JSON.parse(event.data);
      var pre = document.getElementById(message.phase + "-log");
      if (pre) { appendLog(pre, message.text); }
    });
    source.addEventListener("done", function () {
      source.close();
      element.dataset.final = "true";
    });
    source.addEventListener("signed-out", function () {
      source.close();
      stopped(element, "Your session has ended: sign in again to see live updates.");
    });
    source.addEventListener("error", function () {
      if (source.readyState === EventSource.CLOSED) {
        stopped(element, "Live updates stopped. Reload the page to see the latest.");
      }
    });
  });

  var focusTarget = document.getElementById("error") || document.getElementById("new-token");
  if (focusTarget) { focusTarget.focus(); }
})();
