// distress operator console: live fragments over server-sent events, commands, and the evidence player.
// Elements with data-live-src are re-fetched (server-rendered HTML) when an event names one of their
// data-live-on topics; the server renders every fragment with the same template as the page itself.
(() => {
  'use strict';

  const csrfToken = () => document.querySelector('meta[name="csrf-token"]')?.content || '';
  const signInUrl = () => '/login?next=' + encodeURIComponent(location.pathname + location.search);
  const recentIncidents = new Map(); // incident id -> time it was announced, for highlighting new rows

  async function request(method, url, body, signal) {
    const response = await fetch(url, {
      method,
      credentials: 'same-origin',
      headers: body === undefined ? {} : { 'Content-Type': 'application/json', 'X-CSRF-Token': csrfToken() },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
    });
    if (response.status === 401) {
      location.assign(signInUrl());
      throw new Error('signed out');
    }
    return response;
  }

  // ---------------------------------------------------------------------------------- live fragments

  function queryFor(element) {
    const form = element.dataset.queryFrom && document.getElementById(element.dataset.queryFrom);
    if (!form) return '';
    const params = new URLSearchParams();
    for (const [name, value] of new FormData(form)) if (value) params.append(name, value);
    const text = params.toString();
    return text ? '?' + text : '';
  }

  async function refresh(element) {
    const until = element.dataset.liveUntil; // e.g. the evidence stops refreshing once its player exists
    if (until && element.querySelector(until)) return;
    if (element.dataset.busy) {
      element.dataset.again = '1';
      return;
    }
    element.dataset.busy = '1';
    try {
      const response = await request('GET', element.dataset.liveSrc + queryFor(element));
      if (response.ok) {
        element.innerHTML = await response.text();
        highlightRecent(element);
        element.dispatchEvent(new CustomEvent('refreshed', { bubbles: true }));
      }
    } catch (error) {
      console.warn('refresh failed', element.id, error);
    } finally {
      delete element.dataset.busy;
      if (element.dataset.again) {
        delete element.dataset.again;
        refresh(element);
      }
    }
  }

  function refreshTopic(topic) {
    document.querySelectorAll('[data-live-on]').forEach((element) => {
      if (element.dataset.liveOn.split(' ').includes(topic)) refresh(element);
    });
  }

  function refreshAll() {
    document.querySelectorAll('[data-live-src]').forEach(refresh);
  }

  function highlightRecent(root) {
    const now = Date.now();
    root.querySelectorAll('[data-incident-id]').forEach((row) => {
      const announced = recentIncidents.get(row.dataset.incidentId);
      if (announced && now - announced < 15000) row.classList.add('is-new');
    });
  }

  // A connected feed is not enough to say "live": the server also says whether the event log, the database and
  // the pipeline answer (health events). What is wrong is said in words, not by the colour alone.
  const live = { connected: false, health: { status: 'ok', reasons: [] } };

  function showLiveState() {
    const indicator = document.getElementById('live-state');
    if (!indicator) return;
    const { reasons } = live.health;
    let [state, text, title] = ['live', 'live', 'live updates on; event log, database and pipeline answer'];
    if (!live.connected) {
      [state, text, title] = ['offline', 'reconnecting…', 'the live feed from the dashboard server is interrupted'];
    } else if (live.health.status !== 'ok') {
      state = 'degraded';
      text = `degraded: ${reasons[0] || 'see /api/health'}${reasons.length > 1 ? ` (+${reasons.length - 1} more)` : ''}`;
      title = reasons.join('\n');
    }
    indicator.dataset.state = state;
    indicator.textContent = text;
    indicator.title = title;
  }

  function connect() {
    if (!document.querySelector('[data-live-src]')) return;
    const source = new EventSource('/api/events');
    let connectedBefore = false;
    source.addEventListener('hello', () => {
      live.connected = true;
      showLiveState();
      if (connectedBefore) refreshAll(); // updates may have been missed while disconnected
      connectedBefore = true;
    });
    source.addEventListener('health', (message) => {
      live.health = JSON.parse(message.data);
      showLiveState();
    });
    source.addEventListener('incidents', (message) => {
      const { incidents } = JSON.parse(message.data);
      for (const incident of incidents) {
        if (incident.event_type === 'IncidentOpened') recentIncidents.set(incident.incident_id, Date.now());
        refreshTopic('incident:' + incident.incident_id);
        if (incident.has_clip) refreshTopic('clip:' + incident.incident_id);
      }
      refreshTopic('incidents');
    });
    source.addEventListener('streams', () => refreshTopic('streams'));
    source.addEventListener('alerts', () => refreshTopic('alerts'));
    source.addEventListener('resync', refreshAll);
    source.onerror = () => {
      live.connected = false;
      showLiveState();
      if (source.readyState === EventSource.CLOSED) { // refused, not dropped: signed out (redirects) or server gone
        request('GET', '/api/session').catch(() => {}).finally(() => setTimeout(connect, 3000));
      }
    };
  }

  // ------------------------------------------------------------------------------------------ filters

  function setUpFilters() {
    const form = document.getElementById('incident-filters');
    if (!form) return;
    const apply = () => {
      const list = document.getElementById('incident-list');
      history.replaceState(null, '', location.pathname + queryFor(list));
      refresh(list);
    };
    form.addEventListener('change', apply);
    form.addEventListener('reset', () => setTimeout(apply, 0));
    form.addEventListener('submit', (event) => { event.preventDefault(); apply(); });
  }

  // ----------------------------------------------------------------------------------------- commands

  const PAST = { acknowledge: 'Acknowledged', resolve: 'Resolved', 'false-alarm': 'Marked a false alarm', notes: 'Note added' };
  // The server gives up on the event log after about 3 s; this only guards against a server that does not answer.
  const COMMAND_WAIT_MS = 10000;

  async function runCommand(button) {
    const page = document.getElementById('incident');
    const note = document.getElementById('note');
    const status = document.getElementById('action-status');
    const command = button.dataset.command;
    if (command === 'notes' && !note.value.trim()) {
      status.textContent = 'Write the note first.';
      status.className = 'action-status is-error';
      note.focus();
      return;
    }
    button.disabled = true;
    status.textContent = 'Sending…';
    status.className = 'action-status';
    try {
      const response = await request('POST', `/api/incidents/${encodeURIComponent(page.dataset.incidentId)}/${command}`,
        { note: note.value }, AbortSignal.timeout(COMMAND_WAIT_MS));
      const answer = await response.json().catch(() => ({}));
      if (!response.ok) {
        throw new Error(typeof answer.detail === 'string' ? answer.detail : `the server answered ${response.status}`);
      }
      note.value = '';
      status.textContent = `${PAST[command]} by ${answer.actor}.`;
      status.className = 'action-status is-ok';
      refreshTopic('incident:' + page.dataset.incidentId);
    } catch (error) {
      const why = error.name === 'TimeoutError' ? `no answer within ${COMMAND_WAIT_MS / 1000} s`
        : error.message.replace(/\.$/, '');
      status.textContent = `Not done: ${why}.${note.value.trim() ? ' Your note is still in the box above.' : ''}`;
      status.className = 'action-status is-error';
      button.disabled = false;
    }
  }

  function setUpCommands() {
    document.addEventListener('click', (event) => {
      const button = event.target.closest('button[data-command]');
      if (button && !button.disabled) runCommand(button);
    });
    const keys = { a: 'acknowledge', r: 'resolve', f: 'false-alarm' };
    document.addEventListener('keydown', (event) => {
      if (!document.getElementById('incident') || event.ctrlKey || event.metaKey || event.altKey) return;
      if (event.target.closest('input, textarea, select, [contenteditable]')) return;
      const key = event.key.toLowerCase();
      if (key === 'n') {
        event.preventDefault();
        document.getElementById('note').focus();
      } else if (keys[key]) {
        const button = document.querySelector(`button[data-command="${keys[key]}"]`);
        if (button && !button.disabled) {
          event.preventDefault();
          runCommand(button);
        }
      }
    });
    document.getElementById('sign-out')?.addEventListener('click', async () => {
      await request('DELETE', '/api/session', {});
      location.assign('/login');
    });
  }

  // ------------------------------------------------------------------------------------ evidence player

  function setUpPlayer(root) {
    const player = root.querySelector('.player');
    if (!player || player.dataset.ready) return;
    player.dataset.ready = '1';
    const canvas = player.querySelector('canvas');
    const audio = player.querySelector('audio');
    const onset = parseFloat(player.dataset.onset) || 0;
    const words = [...root.querySelectorAll('.word[data-start]')];
    let peaks = [];
    let duration = 0;

    const draw = () => {
      const context = canvas.getContext('2d');
      const { width, height } = canvas;
      const middle = height / 2;
      const position = duration ? audio.currentTime / duration : 0;
      context.clearRect(0, 0, width, height);
      context.fillStyle = '#0b1016';
      context.fillRect(0, 0, width, height);
      peaks.forEach(([low, high], index) => {
        const x = (index / peaks.length) * width;
        context.fillStyle = index / peaks.length <= position ? '#4aa3ff' : '#3a4a5e';
        context.fillRect(x, middle - high * middle, Math.max(1, width / peaks.length - 0.5),
          Math.max(1, (high - low) * middle));
      });
      if (duration) {
        const onsetX = (onset / duration) * width;
        context.fillStyle = '#ff5a5f';
        context.fillRect(onsetX - 1, 0, 2, height);
        context.fillStyle = '#ffffff';
        context.fillRect(position * width - 1, 0, 2, height);
      }
      canvas.setAttribute('aria-valuenow', audio.currentTime.toFixed(1));
    };

    const markWords = () => {
      const now = audio.currentTime;
      words.forEach((word) => {
        const active = now >= parseFloat(word.dataset.start) && now < parseFloat(word.dataset.end);
        word.classList.toggle('is-current', active);
      });
    };

    const tick = () => {
      draw();
      markWords();
      if (!audio.paused) requestAnimationFrame(tick);
    };

    const seek = (seconds) => {
      if (!duration) return;
      audio.currentTime = Math.min(duration, Math.max(0, seconds));
      tick();
    };

    fetch(player.dataset.waveformUrl, { credentials: 'same-origin' })
      .then((response) => (response.ok ? response.json() : Promise.reject(new Error(response.statusText))))
      .then((waveform) => {
        peaks = waveform.peaks;
        duration = waveform.duration_s;
        draw();
      })
      .catch((error) => console.warn('waveform unavailable', error));

    audio.addEventListener('play', () => requestAnimationFrame(tick));
    audio.addEventListener('seeked', tick);
    audio.addEventListener('pause', tick);
    canvas.addEventListener('click', (event) => {
      const box = canvas.getBoundingClientRect();
      seek(((event.clientX - box.left) / box.width) * duration);
    });
    canvas.addEventListener('keydown', (event) => {
      if (event.key === 'ArrowLeft' || event.key === 'ArrowRight') {
        event.preventDefault();
        seek(audio.currentTime + (event.key === 'ArrowLeft' ? -1 : 1));
      } else if (event.key === ' ' || event.key === 'Enter') {
        event.preventDefault();
        if (audio.paused) audio.play(); else audio.pause();
      }
    });
    words.forEach((word) => word.addEventListener('click', () => {
      seek(parseFloat(word.dataset.start));
      audio.play();
    }));
  }

  // -------------------------------------------------------------------------------------------- login

  // Where to go after signing in: only a path on this origin. Browsers drop tabs and line breaks and read '\\' as
  // '/', so '/<TAB>/host' would leave the site: such targets are refused, not cleaned (as the server does).
  function localPath(target) {
    if (typeof target !== 'string' || !target.startsWith('/') || target.startsWith('//')
        || /[\u0000-\u001f\u007f\\\s]/.test(target)) return '/';
    const url = new URL(target, location.origin);
    return url.origin === location.origin ? url.pathname + url.search + url.hash : '/';
  }

  // A one-time sign-in link (/login#token=...) leaves the address bar and history as soon as this script runs, on
  // whatever page: someone signed in already is sent on from /login, and the fragment travels along.
  const linkToken = (() => {
    const token = new URLSearchParams(location.hash.slice(1)).get('token');
    if (token) history.replaceState(null, '', location.pathname + location.search);
    return token;
  })();

  function setUpLogin() {
    const passwordForm = document.getElementById('password-form');
    if (!passwordForm) return;
    const error = document.getElementById('login-error');
    const signIn = async (body, next) => {
      error.textContent = '';
      const response = await fetch('/api/session', {
        method: 'POST', credentials: 'same-origin', headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(body),
      });
      if (response.ok) {
        location.assign(localPath(next));
        return;
      }
      const answer = await response.json().catch(() => ({}));
      error.textContent = typeof answer.detail === 'string' ? answer.detail : 'Sign-in failed: check what you typed.';
    };
    passwordForm.addEventListener('submit', (event) => {
      event.preventDefault();
      const data = new FormData(passwordForm);
      signIn({ username: data.get('username'), password: data.get('password') }, passwordForm.dataset.next);
    });
    const tokenForm = document.getElementById('token-form');
    tokenForm.addEventListener('submit', (event) => {
      event.preventDefault();
      signIn({ token: new FormData(tokenForm).get('token') }, tokenForm.dataset.next);
    });
    if (linkToken) signIn({ token: linkToken }, passwordForm.dataset.next);
  }

  document.addEventListener('refreshed', (event) => setUpPlayer(event.target));
  document.addEventListener('DOMContentLoaded', () => {
    setUpLogin();
    setUpFilters();
    setUpCommands();
    setUpPlayer(document);
    connect();
  });
})();
