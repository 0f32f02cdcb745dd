// opsbot console: follows the output of a run that is still going (an execution page's pre#log)
// with an EventSource on /api/v1/executions/ID/log/stream, which the session cookie signs in.
// Without this script the page still works; it just needs a reload to show more. Nothing is
// stored in the browser.
(function () {
  'use strict';

  var MAX_LINES = 5000;
  var log = document.getElementById('log');
  if (!log || log.getAttribute('data-live') !== '1' || !('EventSource' in window)) {
    return;
  }
  var status = document.getElementById('log-status');
  var badge = document.getElementById('state');
  var trimmed = document.getElementById('log-trimmed');
  var cancelForm = document.getElementById('cancel-form');
  var PREFIX = { stderr: '[stderr] ', system: '[opsbot] ' };
  var CLASS = { stdout: 'out', stderr: 'err', system: 'sys' };

  var pending = [];
  var scheduled = false;

  function say(text) {
    if (status) {
      status.textContent = text;
    }
  }

  function setState(state) {
    if (!badge || !state) {
      return;
    }
    badge.setAttribute('data-state', state);
    badge.className = 'badge ' + state;
    badge.textContent = String(state).replace(/_/g, ' ');
  }

  // Whether the reader is at the end of the log (then it follows new lines).
  function atEnd() {
    return log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  }

  function flush() {
    scheduled = false;
    if (!pending.length) {
      return;
    }
    var follow = atEnd();
    var frag = document.createDocumentFragment();
    for (var i = 0; i < pending.length; i++) {
      var line = pending[i];
      var span = document.createElement('span');
      span.className = CLASS[line.stream] || 'out';
      // Text, never HTML.
      span.textContent = (PREFIX[line.stream] || '') + String(line.text) + '\n';
      frag.appendChild(span);
    }
    pending = [];
    log.appendChild(frag);
    var extra = log.childElementCount - MAX_LINES;
    if (extra > 0) {
      for (var j = 0; j < extra; j++) {
        log.removeChild(log.firstElementChild);
      }
      if (trimmed) {
        trimmed.hidden = false;
      }
    }
    if (follow) {
      log.scrollTop = log.scrollHeight;
    }
  }

  function queue(line) {
    pending.push(line);
    // A hidden tab gets no animation frames: keep what waits bounded too.
    if (pending.length > MAX_LINES) {
      pending.splice(0, pending.length - MAX_LINES);
      if (trimmed) {
        trimmed.hidden = false;
      }
    }
    if (!scheduled) {
      scheduled = true;
      if (window.requestAnimationFrame) {
        window.requestAnimationFrame(flush);
      } else {
        window.setTimeout(flush, 50);
      }
    }
  }

  function describeEnd(e) {
    var parts = [];
    if (e.exit_code !== null && e.exit_code !== undefined) {
      parts.push('exit code ' + e.exit_code);
    }
    if (e.duration_ms !== null && e.duration_ms !== undefined) {
      parts.push(e.duration_ms < 1000 ? e.duration_ms + ' ms' : (e.duration_ms / 1000).toFixed(1) + ' s');
    }
    if (e.detail) {
      parts.push(e.detail);
    }
    var text = 'Finished: ' + String(e.state).replace(/_/g, ' ');
    if (parts.length) {
      text += ' (' + parts.join(', ') + ')';
    }
    return text + '. Reload the page for the full timeline.';
  }

  var url = log.getAttribute('data-stream') + '?after=' + encodeURIComponent(log.getAttribute('data-after') || '0');
  var source = new EventSource(url);

  source.addEventListener('open', function () {
    say('Live: new output appears here as it comes.');
  });

  source.addEventListener('line', function (ev) {
    var line;
    try {
      line = JSON.parse(ev.data);
    } catch (err) {
      return;
    }
    if (badge && badge.getAttribute('data-state') === 'queued') {
      setState('running');
    }
    queue(line);
  });

  source.addEventListener('end', function (ev) {
    source.close();
    flush();
    var e = null;
    try {
      e = JSON.parse(ev.data);
    } catch (err) {
      e = null;
    }
    if (e) {
      setState(e.state);
      say(describeEnd(e));
    } else {
      say('Finished. Reload the page for the outcome.');
    }
    if (cancelForm) {
      cancelForm.hidden = true;
    }
    log.setAttribute('data-live', '0');
  });

  // Both the server's own `event: error` (with data) and lost connections arrive here.
  source.addEventListener('error', function (ev) {
    if (ev && typeof ev.data === 'string' && ev.data) {
      source.close();
      var id = '';
      try {
        id = JSON.parse(ev.data).error.error_id || '';
      } catch (err) {
        id = '';
      }
      say('The live log failed on the server' + (id ? ' (error id ' + id + ')' : '') + '; reload the page to try again.');
      return;
    }
    if (source.readyState === EventSource.CLOSED) {
      say('The live log stopped (signed out, or the server went away); reload the page.');
    } else {
      say('Connection lost; reconnecting…');
    }
  });
})();
