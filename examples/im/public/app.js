// examples/im/public/app.js - the page of the IM example (see ../app.lua).
// Plain browser JavaScript on bayeux's client (/faye/client.js, the Faye
// API); everything the server sends is shown with textContent, never HTML.
(function () {
  'use strict';
  const $ = (id) => document.getElementById(id);
  const TYPING_EVERY_MS = 1500;     // at most one "typing" signal per this
  const TYPING_SHOWN_MS = 3500;     // a signal shows this long

  const state = {
    me: null, token: null, client: null, current: null,
    convs: {},                      // channel -> { title, topic, kind, messages, seen, unread, typing, members, li }
    online: new Set(), names: {}, lastTyping: 0,
  };
  window.im = state;                // for the browser tests and the curious

  function h(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function dmChannel(a, b) {
    return a < b ? `/dm/${a}/${b}` : `/dm/${b}/${a}`;
  }

  function nameOf(id) {
    return state.names[id] || id;
  }

  async function api(path) {
    const r = await fetch(path, { headers: { Authorization: 'Bearer ' + state.token } });
    if (!r.ok) throw new Error(path + ': ' + r.status);
    return r.json();
  }

  // ------------------------------------------------------------- login

  function showLogin(error) {
    $('app').hidden = true;
    $('login').hidden = false;
    $('login-error').textContent = error || '';
    $('login-user').focus();
  }

  $('login-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    $('login-error').textContent = '';
    let r;
    try {
      r = await fetch('/login', {
        method: 'POST', headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ user: $('login-user').value.trim(), password: $('login-password').value }),
      });
    } catch (e) {
      $('login-error').textContent = 'The server cannot be reached';
      return;
    }
    const body = await r.json().catch(() => ({}));
    if (!r.ok) {
      $('login-error').textContent = body.error || 'Login failed';
      return;
    }
    $('login-password').value = '';
    sessionStorage.setItem('im-login', JSON.stringify(body));
    start(body);
  });

  $('logout').addEventListener('click', () => {
    sessionStorage.removeItem('im-login');
    const client = state.client;
    state.client = null;
    let gone = false;
    const reload = () => { if (!gone) { gone = true; location.reload(); } };
    if (!client) return reload();
    // a reload cancels requests in flight: let the server hear the
    // disconnect first (so the others see us leave at once), within 2 s
    client.disconnect().then(reload, reload);
    setTimeout(reload, 2000);
  });

  // ------------------------------------------------------ conversations

  function addConv(list, channel, title, topic, kind, person) {
    const li = h('li');
    li.dataset.channel = channel;
    if (kind === 'dm') {
      const dot = h('span', 'dot');
      dot.dataset.person = person;
      li.appendChild(dot);
    }
    li.appendChild(h('span', 'name', kind === 'room' ? '# ' + title : title));
    const badge = h('span', 'badge', '');
    li.appendChild(badge);
    li.addEventListener('click', () => open(channel));
    list.appendChild(li);
    state.convs[channel] = { title, topic, kind, person, messages: [], seen: new Set(), unread: 0,
                             typing: new Map(), members: [], li, badge };
  }

  function open(channel) {
    const conv = state.convs[channel];
    if (!conv) return;
    state.current = channel;
    for (const c of Object.values(state.convs)) c.li.classList.toggle('active', c === conv);
    conv.unread = 0;
    conv.badge.textContent = '';
    $('title').textContent = conv.kind === 'room' ? '# ' + conv.title : conv.title;
    $('topic').textContent = conv.topic || '';
    $('text').placeholder = 'Message ' + (conv.kind === 'room' ? '#' + conv.title : conv.title);
    const box = $('messages');
    box.textContent = '';
    for (const m of conv.messages) box.appendChild(render(m));
    box.scrollTop = box.scrollHeight;
    showMembers();
    showTyping();
    $('text').focus();
  }

  function render(m) {
    const li = h('li', 'msg' + (m.from === state.me ? ' mine' : ''));
    li.appendChild(h('span', 'from', nameOf(m.from)));
    const at = new Date(typeof m.at === 'number' ? m.at : Date.now());
    li.appendChild(h('span', 'time', at.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })));
    li.appendChild(h('span', 'text', String(m.text)));
    return li;
  }

  function received(channel, m) {
    const conv = state.convs[channel];
    if (!conv || !m || typeof m.text !== 'string') return;
    if (m.id && conv.seen.has(m.id)) return;      // history and live may overlap
    if (m.id) conv.seen.add(m.id);
    conv.messages.push(m);
    conv.typing.delete(m.from);
    if (channel === state.current) {
      const box = $('messages');
      box.appendChild(render(m));
      box.scrollTop = box.scrollHeight;
      showTyping();
    } else if (m.from !== state.me) {
      conv.unread++;
      conv.badge.textContent = String(conv.unread);
    }
  }

  // ------------------------------------------------ presence and typing

  function showOnline() {
    for (const dot of document.querySelectorAll('#people .dot')) {
      dot.classList.toggle('online', state.online.has(dot.dataset.person));
    }
  }

  function showMembers() {
    const conv = state.convs[state.current];
    if (!conv) return;
    if (conv.kind === 'room') {
      const names = conv.members.map(nameOf);
      $('members').textContent = names.length ? `${names.length} here: ${names.join(', ')}` : '';
    } else {
      $('members').textContent = state.online.has(conv.person) ? 'online' : 'offline';
    }
  }

  function onPresence(apply) {
    return (event) => {
      if (!event || typeof event !== 'object') return;
      apply(event);
      showOnline();
      showMembers();
    };
  }

  // a join/leave event: the full list when the room is small, else one change
  function applyTo(list, event) {
    if (Array.isArray(event.users)) return event.users.slice();
    const set = new Set(list);
    if (event.user) {
      if (event.event === 'join') set.add(event.user); else set.delete(event.user);
    }
    return Array.from(set).sort();
  }

  function showTyping() {
    const conv = state.convs[state.current];
    const who = conv ? Array.from(conv.typing.keys()).map(nameOf) : [];
    $('typing').textContent = who.length === 0 ? ''
      : who.length === 1 ? `${who[0]} is typing…` : `${who.join(', ')} are typing…`;
  }

  function onTyping(channel) {
    return (signal) => {
      const conv = state.convs[channel];
      if (!conv || !signal || signal.from === state.me) return;
      clearTimeout(conv.typing.get(signal.from));
      if (signal.typing) {
        conv.typing.set(signal.from, setTimeout(() => {
          conv.typing.delete(signal.from);
          if (channel === state.current) showTyping();
        }, TYPING_SHOWN_MS));
      } else {
        conv.typing.delete(signal.from);
      }
      if (channel === state.current) showTyping();
    };
  }

  $('text').addEventListener('input', () => {
    const now = Date.now();
    if (!state.current || now - state.lastTyping < TYPING_EVERY_MS) return;
    state.lastTyping = now;
    state.client.publish('/typing' + state.current, { typing: true });
  });

  $('composer').addEventListener('submit', (event) => {
    event.preventDefault();
    const text = $('text').value;
    if (!text.trim() || !state.current) return;
    const id = Math.random().toString(36).slice(2) + Date.now().toString(36);
    const channel = state.current;
    state.client.publish(channel, { id, text, at: Date.now() }).then(null, (err) => {
      $('status').textContent = 'not sent: ' + err.message;
    });
    state.client.publish('/typing' + channel, { typing: false });
    state.lastTyping = 0;
    $('text').value = '';
  });

  // -------------------------------------------------------------- start

  function subscribe(channel, fn) {
    return state.client.subscribe(channel, fn).then(null, (err) => {
      $('status').textContent = `cannot subscribe to ${channel}: ${err.message}`;
      throw err;
    });
  }

  function start(login) {
    state.me = login.user;
    state.token = login.token;
    for (const p of login.people) state.names[p.id] = p.name;
    $('login').hidden = true;
    $('app').hidden = false;
    $('me-name').textContent = login.name;

    const client = new Faye.Client('/faye');
    state.client = client;
    // ?disable=websocket,eventsource (and so on) forces a transport
    const disable = new URLSearchParams(location.search).get('disable');
    if (disable) disable.split(',').forEach((t) => client.disable(t));
    // the token goes with every message but the connects (the server
    // checks it at the handshake, and again on a subscribe or publish)
    client.addExtension({ outgoing(m, cb) {
      if (m.channel !== '/meta/connect') m.ext = Object.assign(m.ext || {}, { token: state.token });
      cb(m);
    } });
    client.on('transport:down', () => { $('status').textContent = 'offline, reconnecting…'; });
    client.on('transport:up', () => { $('status').textContent = 'connected'; });

    const subs = [];
    for (const r of login.rooms) {
      const channel = '/room/' + r.id;
      addConv($('rooms'), channel, r.id, r.topic, 'room');
      subs.push(subscribe(channel, (m) => received(channel, m)));
      subs.push(subscribe('/typing' + channel, onTyping(channel)));
      subs.push(subscribe('/presence' + channel, onPresence((e) => {
        state.convs[channel].members = applyTo(state.convs[channel].members, e);
      })));
    }
    for (const p of login.people) {
      if (p.id === state.me) continue;
      const channel = dmChannel(state.me, p.id);
      addConv($('people'), channel, p.name, 'Direct messages with ' + p.name, 'dm', p.id);
      subs.push(subscribe(channel, (m) => received(channel, m)));
      subs.push(subscribe('/typing' + channel, onTyping(channel)));
    }
    subs.push(subscribe('/presence/online', onPresence((e) => {
      state.online = new Set(applyTo(Array.from(state.online), e));
    })));
    open('/room/' + login.rooms[0].id);

    Promise.all(subs).then(() => subscribe('/online', () => {})).then(async () => {
      $('status').textContent = 'connected';
      // what happened before this page: who is here, the last messages
      const online = await api('/api/presence?channel=/online');
      for (const u of online.users) state.online.add(u);
      for (const [channel, conv] of Object.entries(state.convs)) {
        if (conv.kind === 'room') {
          const p = await api('/api/presence?channel=' + encodeURIComponent(channel));
          conv.members = applyTo(conv.members.concat(p.users), { users: undefined });
        }
        const hist = await api('/api/history?channel=' + encodeURIComponent(channel));
        const live = conv.messages;
        conv.messages = [];
        for (const m of hist.messages.concat(live)) {
          if (m.id && conv.seen.has(m.id) && !live.includes(m)) continue;
          conv.messages.push(m);
        }
        for (const m of hist.messages) if (m.id) conv.seen.add(m.id);
      }
      open(state.current);
      showOnline();
      state.ready = true;
    }).catch((err) => {
      $('status').textContent = 'not connected: ' + err.message;
    });
  }

  // a login kept from before this page (a reload) while its token is good
  function stillValid(login) {
    try {
      const b64 = login.token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      return JSON.parse(atob(b64)).exp * 1000 > Date.now() + 60000;
    } catch (e) {
      return false;
    }
  }
  const saved = JSON.parse(sessionStorage.getItem('im-login') || 'null');
  if (saved && stillValid(saved)) start(saved);
  else showLogin(saved ? 'Your session expired: please log in again' : '');
})();
