// ElixirML console: the few things a server-rendered page cannot do alone.
(function () {
  "use strict";

  // Evaluation comparison: show only the examples whose score changed.
  var onlyChanged = document.getElementById("only-changed");
  if (onlyChanged) {
    onlyChanged.addEventListener("change", function () {
      document.getElementById("pairs").classList.toggle("hide-same", onlyChanged.checked);
    });
  }

  // A plot point links to its trial's row: highlight it after the jump.
  document.querySelectorAll("a.trial-link").forEach(function (link) {
    link.addEventListener("click", function () {
      document.querySelectorAll("tr.highlight").forEach(function (row) { row.classList.remove("highlight"); });
      var row = document.getElementById("trial-" + link.getAttribute("data-trial"));
      if (row) { row.classList.add("highlight"); }
    });
  });

  // "Try it": post the form, read the Server-Sent Events as they arrive, write each field's text.
  var form = document.getElementById("try-form");
  if (!form) { return; }
  var answer = document.getElementById("answer-fields");
  var state = document.getElementById("run-state");
  var events = document.getElementById("events");
  var button = document.getElementById("run-button");

  function fieldBox(name) {
    var box = document.getElementById("out-" + name);
    if (!box) {
      var wrap = document.createElement("div");
      wrap.className = "out";
      var label = document.createElement("span");
      label.className = "field";
      label.textContent = name;
      box = document.createElement("pre");
      box.id = "out-" + name;
      box.setAttribute("data-field", name);
      wrap.appendChild(label);
      wrap.appendChild(box);
      answer.appendChild(wrap);
    }
    return box;
  }

  function note(text, css) {
    var line = document.createElement("div");
    if (css) { line.className = css; }
    line.textContent = text;
    events.appendChild(line);
  }

  function handle(kind, data) {
    if (kind === "chunk") {
      fieldBox(data.field).textContent += data.text;
    } else if (kind === "status") {
      if (data.kind !== "start") { note(data.kind + (data.module ? " " + data.module : "") + (data.name ? " " + data.name : "")); }
    } else if (kind === "result") {
      Object.keys(data.outputs || {}).forEach(function (name) {
        var value = data.outputs[name];
        fieldBox(name).textContent = typeof value === "string" ? value : JSON.stringify(value, null, 2);
      });
      state.textContent = "done";
      if (data.execution_id) { addTraceLink(data.execution_id); }
    } else if (kind === "error") {
      note(data.message, "error-text");
      state.textContent = "failed";
      if (data.execution_id) { addTraceLink(data.execution_id); }
    }
  }

  function addTraceLink(id) {
    var link = document.createElement("a");
    link.href = form.getAttribute("data-root") + "/traces/" + id;
    link.id = "trace-link";
    link.textContent = "See the trace of this run (#" + id + ")";
    var line = document.createElement("div");
    line.appendChild(link);
    events.appendChild(line);
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var inputs = {};
    form.querySelectorAll("[name]").forEach(function (el) {
      inputs[el.name] = el.getAttribute("data-type") === "boolean" ? el.checked : el.value;
    });
    answer.textContent = "";
    events.textContent = "";
    state.textContent = "running…";
    button.disabled = true;
    fetch(form.getAttribute("data-url"), {
      method: "POST",
      headers: { "Content-Type": "application/json", "Accept": "text/event-stream" },
      body: JSON.stringify({ inputs: inputs })
    }).then(function (response) {
      if (!response.ok || !response.body) { throw new Error("the server answered " + response.status); }
      var reader = response.body.getReader();
      var decoder = new TextDecoder();
      var buffer = "";
      function pump() {
        return reader.read().then(function (part) {
          if (part.done) { return; }
          buffer += decoder.decode(part.value, { stream: true });
          var frames = buffer.split("\n\n");
          buffer = frames.pop();
          frames.forEach(function (frame) {
            var kind = "message", data = [];
            frame.split("\n").forEach(function (line) {
              if (line.indexOf("event: ") === 0) { kind = line.slice(7); }
              else if (line.indexOf("data: ") === 0) { data.push(line.slice(6)); }
            });
            if (data.length) { handle(kind, JSON.parse(data.join("\n"))); }
          });
          return pump();
        });
      }
      return pump();
    }).catch(function (error) {
      note("The request failed: " + error.message, "error-text");
      state.textContent = "failed";
    }).then(function () { button.disabled = false; });
  });
  // Login: the token goes as JSON (the console takes no form posts), the answer sets the login cookie.
  var login = document.getElementById("login-form");
  if (login) {
    login.addEventListener("submit", function (event) {
      event.preventDefault();
      var state = document.getElementById("login-state");
      fetch(login.getAttribute("data-url"), {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ token: login.querySelector("[name=token]").value })
      }).then(function (response) {
        if (response.ok) { window.location.href = login.getAttribute("data-next"); return; }
        state.hidden = false;
        state.textContent = response.status === 401 ? "That token is not accepted." : "The server answered " + response.status;
      });
    });
  }
})();
