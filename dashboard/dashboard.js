// The dashboard's only script: it reads /api/v1 with the session cookie every few seconds and
// renders with textContent (never innerHTML), so job data cannot inject markup.
(function () {
  'use strict';

  var REFRESH_MS = 5000;
  var LIST_LIMIT = 25;
  var csrf = document.querySelector('meta[name="csrf-token"]').getAttribute('content');
  var refreshing = null;
  var timer = null;

  function api(method, path, body) {
    var headers = { accept: 'application/json' };
    if (method !== 'GET') headers['x-csrf-token'] = csrf;
    if (body !== undefined) headers['content-type'] = 'application/json';
    return fetch('/api/v1/queue' + path, {
      method: method,
      credentials: 'same-origin',
      headers: headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (payload) {
        if (response.status === 401) {
          // The session ended (expiry, restart, new token): the page itself shows the sign-in form.
          window.location.reload();
        }
        if (!response.ok) throw new Error(payload.message || response.status + ' ' + response.statusText);
        return payload;
      });
    });
  }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      if (key === 'text') node.textContent = attrs[key];
      else if (key === 'class') node.className = attrs[key];
      else node.setAttribute(key, attrs[key]);
    });
    (children || []).forEach(function (child) { if (child) node.appendChild(child); });
    return node;
  }

  function cell(text, className) {
    return el('td', { text: text === null || text === undefined ? '—' : String(text), class: className || '' });
  }

  function number(n) {
    return n === null || n === undefined ? '—' : Number(n).toLocaleString('en-US');
  }

  function seconds(s) {
    if (s === null || s === undefined) return '—';
    if (s < 1) return Math.round(s * 1000) + ' ms';
    if (s < 60) return (Math.round(s * 10) / 10) + ' s';
    if (s < 3600) return Math.floor(s / 60) + ' min ' + Math.round(s % 60) + ' s';
    if (s < 86400) return Math.floor(s / 3600) + ' h ' + Math.round((s % 3600) / 60) + ' min';
    return Math.floor(s / 86400) + ' d ' + Math.round((s % 86400) / 3600) + ' h';
  }

  function pair(a, b) {
    return a === null || a === undefined ? '—' : seconds(a) + ' / ' + seconds(b);
  }

  function when(iso) {
    if (!iso) return '—';
    var date = new Date(iso);
    var ago = (Date.now() - date.getTime()) / 1000;
    return date.toLocaleString() + (ago >= 0 ? ' (' + seconds(ago) + ' ago)' : '');
  }

  function json(value) {
    return el('code', { text: value === undefined ? '' : JSON.stringify(value) });
  }

  function dataCell(value) {
    return el('td', { class: 'wrap' }, [json(value)]);
  }

  function button(label, action, attrs, className) {
    var node = el('button', Object.assign({ type: 'button', 'data-action': action, text: label }, attrs));
    if (className) node.className = className;
    return node;
  }

  function sparkline(minutes) {
    var ns = 'http://www.w3.org/2000/svg';
    var width = 120;
    var height = 24;
    var svg = document.createElementNS(ns, 'svg');
    svg.setAttribute('class', 'spark');
    svg.setAttribute('width', String(width));
    svg.setAttribute('height', String(height));
    var max = Math.max.apply(null, [1].concat(minutes.map(function (m) { return m.completed + m.failed; })));
    var bar = width / Math.max(minutes.length, 1);
    minutes.forEach(function (m, i) {
      var done = (m.completed / max) * height;
      var fail = (m.failed / max) * height;
      [['done', done, height - done], ['fail', fail, height - done - fail]].forEach(function (part) {
        if (part[1] <= 0) return;
        var rect = document.createElementNS(ns, 'rect');
        rect.setAttribute('class', part[0]);
        rect.setAttribute('x', String(i * bar));
        rect.setAttribute('y', String(part[2]));
        rect.setAttribute('width', String(Math.max(bar - 0.5, 0.5)));
        rect.setAttribute('height', String(part[1]));
        svg.appendChild(rect);
      });
    });
    var title = document.createElementNS(ns, 'title');
    var total = minutes.reduce(function (sum, m) { return sum + m.completed + m.failed; }, 0);
    title.textContent = total + ' jobs finished in the last ' + minutes.length + ' minutes';
    svg.appendChild(title);
    return svg;
  }

  function fill(section, rows, count) {
    var root = document.getElementById(section);
    var body = root.querySelector('tbody');
    body.replaceChildren.apply(body, rows);
    root.querySelector('.empty').hidden = rows.length > 0;
    root.querySelector('.count').textContent = count === undefined ? '' : '(' + count + ')';
  }

  function renderQueues(stats, throughput) {
    var byQueue = {};
    throughput.minutes.forEach(function (m) { (byQueue[m.queue] = byQueue[m.queue] || []).push(m); });
    var rows = stats.queues.filter(function (q) { return q.kind === 'queue'; }).map(function (q) {
      return el('tr', { 'data-queue': q.queue }, [
        el('td', {}, [el('strong', { text: q.queue })]),
        cell(number(q.queued), 'num'),
        cell(number(q.deferred), 'num'),
        cell(number(q.retrying), 'num' + (q.retrying > 0 ? ' warn' : '')),
        cell(number(q.active), 'num'),
        cell(number(q.failed), 'num' + (q.failed > 0 ? ' bad' : '')),
        cell(number(q.dead_lettered), 'num' + (q.dead_lettered > 0 ? ' bad' : '')),
        cell(number(q.completed_last_hour), 'num'),
        cell(number(q.failed_last_hour), 'num'),
        cell(q.jobs_per_minute, 'num'),
        el('td', {}, [sparkline(byQueue[q.queue] || [])]),
        cell(seconds(q.oldest_waiting_seconds), 'num'),
        cell(pair(q.wait_p50_seconds, q.wait_p95_seconds), 'num'),
        cell(pair(q.run_p50_seconds, q.run_p95_seconds), 'num'),
      ]);
    });
    document.querySelector('#queues tbody').replaceChildren.apply(document.querySelector('#queues tbody'), rows);

    var actions = document.querySelector('#dead-letters .actions');
    var buttons = stats.queues.filter(function (q) { return q.kind === 'queue' && q.dead_lettered > 0; }).map(function (q) {
      return button('Replay all ' + number(q.dead_lettered) + ' of ' + q.queue, 'replay-all', { 'data-queue': q.queue }, 'quiet');
    });
    actions.replaceChildren.apply(actions, buttons);
  }

  function renderDeadLetters(list, stats) {
    var total = stats.queues.reduce(function (sum, q) { return sum + (q.kind === 'queue' ? q.dead_lettered : 0); }, 0);
    fill('dead-letters', list.deadLetters.map(function (d) {
      return el('tr', { 'data-job-id': d.id }, [
        cell(when(d.deadLetteredAt)),
        cell(d.sourceQueue),
        dataCell(d.data),
        cell(d.error, 'wrap'),
        cell(d.attempts, 'num'),
        el('td', {}, [button('Replay', 'replay', { 'data-id': d.id, 'data-queue': d.deadLetterQueue })]),
      ]);
    }), total);
  }

  function renderFailed(list, stats) {
    var total = stats.queues.reduce(function (sum, q) { return sum + (q.kind === 'queue' ? q.failed : 0); }, 0);
    fill('failed', list.jobs.map(function (j) {
      return el('tr', { 'data-job-id': j.id }, [
        cell(when(j.completedOn)),
        cell(j.queue),
        el('td', {}, [el('code', { text: j.id })]),
        dataCell(j.data),
        cell(j.error, 'wrap'),
        cell(j.attempt, 'num'),
        el('td', {}, [button('Retry', 'retry', { 'data-id': j.id })]),
      ]);
    }), total);
  }

  function renderWaiting(list, stats) {
    var total = stats.queues.reduce(function (sum, q) { return sum + (q.kind === 'queue' ? q.queued + q.deferred + q.retrying : 0); }, 0);
    fill('waiting', list.jobs.map(function (j) {
      return el('tr', { 'data-job-id': j.id }, [
        cell(when(j.createdOn)),
        cell(j.queue),
        el('td', {}, [el('code', { text: j.id })]),
        dataCell(j.data),
        cell(j.state),
        cell(j.error, 'wrap'),
        el('td', {}, [button('Cancel', 'cancel', { 'data-id': j.id }, 'danger')]),
      ]);
    }), total);
  }

  function notify(message, isError) {
    var notice = document.getElementById('notice');
    notice.textContent = message;
    notice.className = isError ? 'error' : '';
    notice.hidden = false;
  }

  function refresh() {
    if (refreshing) return refreshing;
    refreshing = api('GET', '/stats').then(function (stats) {
      // Dead letters wait in their own queues too; they are listed, and counted, as dead letters.
      var queues = stats.queues.filter(function (q) { return q.kind === 'queue'; }).map(function (q) {
        return 'queue=' + encodeURIComponent(q.queue);
      }).join('&');
      return Promise.all([
        stats,
        api('GET', '/throughput?minutes=60'),
        api('GET', '/dead-letters?limit=' + LIST_LIMIT),
        api('GET', '/jobs?state=failed&limit=' + LIST_LIMIT),
        api('GET', '/jobs?state=created&state=retry&limit=' + LIST_LIMIT + (queues ? '&' + queues : '')),
      ]);
    }).then(function (results) {
      renderQueues(results[0], results[1]);
      renderDeadLetters(results[2], results[0]);
      renderFailed(results[3], results[0]);
      renderWaiting(results[4], results[0]);
      document.getElementById('updated').textContent = 'updated ' + new Date().toLocaleTimeString();
    }).catch(function (err) {
      notify('Could not refresh: ' + err.message, true);
    }).then(function () {
      refreshing = null;
    });
    return refreshing;
  }

  function plural(n, word) {
    return n + ' ' + word + (n === 1 ? '' : 's');
  }

  function describeReplay(r) {
    var text = 'Replayed ' + plural(r.replayed, 'dead letter') + ' to ' + r.queue + ': ' + plural(r.jobsCreated, 'new job');
    if (r.replayed > r.jobsCreated) text += ' (the other rows already had a job waiting)';
    if (r.skippedIds.length) text += '; ' + r.skippedIds.length + ' left in place (no row id in their data)';
    if (r.notFoundIds.length) text += '; ' + r.notFoundIds.length + ' no longer there';
    return text + '.';
  }

  var actions = {
    replay: function (target) {
      return api('POST', '/dead-letters/replay', { queue: target.dataset.queue, ids: [target.dataset.id] }).then(describeReplay);
    },
    'replay-all': function (target) {
      if (!window.confirm('Replay every dead letter of ' + target.dataset.queue + '?')) return Promise.resolve(null);
      return api('POST', '/dead-letters/replay', { queue: target.dataset.queue }).then(describeReplay);
    },
    retry: function (target) {
      return api('PUT', '/jobs/' + target.dataset.id + '/retry').then(function (job) {
        return 'Job ' + job.id + ' of ' + job.queue + ' is queued to retry (attempt ' + (job.attempt + 1) + ' of ' + (job.retryLimit + 1) + ').';
      });
    },
    cancel: function (target) {
      if (!window.confirm('Cancel job ' + target.dataset.id + '? Its change will not be synced until the row changes again.')) return Promise.resolve(null);
      return api('DELETE', '/jobs/' + target.dataset.id).then(function (job) {
        return 'Job ' + job.id + ' of ' + job.queue + ' is cancelled.';
      });
    },
  };

  document.addEventListener('click', function (event) {
    var target = event.target.closest('button[data-action]');
    if (!target) return;
    target.disabled = true;
    actions[target.dataset.action](target).then(function (message) {
      if (message) notify(message, false);
    }, function (err) {
      notify(err.message, true);
    }).then(function () {
      target.disabled = false;
      return refresh();
    });
  });

  function loop() {
    refresh().then(function () { timer = window.setTimeout(loop, REFRESH_MS); });
  }

  document.addEventListener('visibilitychange', function () {
    if (document.hidden || timer === null) return;
    window.clearTimeout(timer);
    loop();
  });

  loop();
})();
