// opsbot web chat: one WebSocket per page; replies are Reply documents rendered as DOM nodes
// (text only through textContent: nothing from the server is ever parsed as HTML).
(function () {
  "use strict";
  var root = document.getElementById("chat");
  if (!root) return;
  var channel = root.dataset.channel;
  var me = root.dataset.user;
  var csrf = document.querySelector('meta[name="csrf-token"]').content;
  var list = document.getElementById("messages");
  var form = document.getElementById("composer");
  var input = document.getElementById("message");
  var sendButton = document.getElementById("send");
  var status = document.getElementById("connection");
  var socket = null;
  var retry = 500;

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }

  // `code spans` in text become <code>; everything else stays text.
  function inline(parent, text) {
    var parts = String(text).split("`");
    for (var i = 0; i < parts.length; i++) {
      if (i % 2 === 1 && i < parts.length - 1) parent.appendChild(el("code", null, parts[i]));
      else parent.appendChild(document.createTextNode(i % 2 === 1 ? "`" + parts[i] : parts[i]));
    }
  }

  function safeUrl(u) {
    return /^https?:\/\//i.test(u) || /^\/(?!\/)/.test(u) ? u : null;
  }

  function renderReply(body, reply) {
    var blocks = reply.blocks || [];
    for (var i = 0; i < blocks.length; i++) {
      var b = blocks[i];
      switch (b.kind) {
        case "heading": body.appendChild(el("h3", null, b.text)); break;
        case "text": var p = el("p"); inline(p, b.text); body.appendChild(p); break;
        case "code": body.appendChild(el("pre", null, b.text)); break;
        case "fields":
          var dl = el("dl", "fields");
          (b.fields || []).forEach(function (f) { dl.appendChild(el("dt", null, f[0])); dl.appendChild(el("dd", null, f[1])); });
          body.appendChild(dl); break;
        case "table":
          var wrap = el("div", "table-wrap"), t = el("table"), thead = el("thead"), hr = el("tr");
          (b.headers || []).forEach(function (h) { hr.appendChild(el("th", null, h)); });
          thead.appendChild(hr); t.appendChild(thead);
          var tb = el("tbody");
          (b.rows || []).forEach(function (r) { var tr = el("tr"); r.forEach(function (c) { var td = el("td"); inline(td, c); tr.appendChild(td); }); tb.appendChild(tr); });
          t.appendChild(tb); wrap.appendChild(t); body.appendChild(wrap); break;
        case "status":
          var badge = el("span", "badge " + b.tone, b.label);
          if (reply.state) badge.dataset.state = reply.state;
          var sp = el("p"); sp.appendChild(badge); body.appendChild(sp); break;
        case "buttons":
          var row = el("div", "buttons");
          (b.buttons || []).forEach(function (btn) {
            var cls = "reply-button" + (btn.tone === "error" ? " danger" : btn.tone === "success" ? " primary" : "");
            var x = el("button", cls, btn.label);
            x.type = "button";
            x.dataset.command = btn.command;
            x.title = btn.command;
            row.appendChild(x);
          });
          body.appendChild(row); break;
        case "image":
          var src = safeUrl(b.url);
          if (src) { var img = el("img"); img.src = src; img.alt = b.alt || ""; img.loading = "lazy"; body.appendChild(img); }
          break;
        case "link":
          var href = safeUrl(b.url);
          if (href) { var a = el("a", null, b.text || b.url); a.href = href; a.rel = "noopener noreferrer"; a.target = "_blank"; var lp = el("p"); lp.appendChild(a); body.appendChild(lp); }
          break;
      }
    }
  }

  function time(iso) {
    var d = new Date(iso);
    return isNaN(d) ? "" : d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function render(m) {
    var bot = m.author === "bot";
    var cls = "msg " + (bot ? "bot" : "user") + (m.author === me ? " mine" : "");
    if (bot && m.reply && m.reply.tone) cls += " tone-" + m.reply.tone;
    var node = el("div", cls);
    node.dataset.id = m.id;
    if (m.card_for) node.dataset.card = m.card_for;
    var meta = el("div", "meta");
    meta.appendChild(el("b", null, m.author_name));
    meta.appendChild(document.createTextNode(" · " + time(m.created_at)));
    if (m.card_for) {
      var link = el("a", null, "run #" + m.card_for);
      link.href = "/executions/" + m.card_for;
      meta.appendChild(document.createTextNode(" · "));
      meta.appendChild(link);
    }
    node.appendChild(meta);
    var body = el("div", "body");
    if (bot && m.reply) renderReply(body, m.reply);
    else { var p = el("p"); p.textContent = m.text || ""; body.appendChild(p); }
    node.appendChild(body);
    return node;
  }

  function nearBottom() { return list.scrollHeight - list.scrollTop - list.clientHeight < 80; }

  function add(m) {
    if (list.querySelector('.msg[data-id="' + m.id + '"]')) return update(m);
    var stick = nearBottom();
    list.appendChild(render(m));
    if (stick || m.author === me) list.scrollTop = list.scrollHeight;
  }

  function update(m) {
    var old = list.querySelector('.msg[data-id="' + m.id + '"]');
    if (!old) return add(m);
    var stick = nearBottom();
    old.replaceWith(render(m));
    if (stick) list.scrollTop = list.scrollHeight;
  }

  function note(text, cls) {
    var n = el("div", "msg note " + (cls || ""));
    var b = el("div", "body flash " + (cls || "warning"), text);
    n.appendChild(b);
    list.appendChild(n);
    list.scrollTop = list.scrollHeight;
  }

  function connect() {
    var proto = location.protocol === "https:" ? "wss://" : "ws://";
    var url = proto + location.host + "/chat/ws?channel=" + encodeURIComponent(channel) + "&csrf=" + encodeURIComponent(csrf);
    status.textContent = "connecting…";
    socket = new WebSocket(url);
    socket.onopen = function () { retry = 500; status.textContent = "connected"; sendButton.disabled = false; };
    socket.onmessage = function (e) {
      var ev;
      try { ev = JSON.parse(e.data); } catch (err) { return; }
      if (ev.type === "history") { list.textContent = ""; ev.messages.forEach(add); list.scrollTop = list.scrollHeight; }
      else if (ev.type === "message") add(ev.message);
      else if (ev.type === "update") update(ev.message);
      else if (ev.type === "error") note(ev.message, "error");
      else if (ev.type === "resync") { socket.close(); }
    };
    socket.onclose = function (e) {
      sendButton.disabled = true;
      if (e.code === 1008 || e.code === 4401) { status.textContent = "signed out — reload to sign in"; return; }
      status.textContent = "disconnected — reconnecting…";
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 10000);
    };
  }

  function say(text, button) {
    if (!socket || socket.readyState !== WebSocket.OPEN) { note("Not connected; the message was not sent.", "error"); return false; }
    var ev = { type: "say", text: text };
    if (button) ev.button = button;
    socket.send(JSON.stringify(ev));
    return true;
  }

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    var text = input.value.trim();
    if (!text) return;
    if (say(text)) input.value = "";
  });

  list.addEventListener("click", function (e) {
    var b = e.target.closest("button.reply-button");
    if (b) say(b.dataset.command, b.textContent);
  });

  connect();
})();
