/*
 * bayeux.js - the browser client of the bayeux server (served as
 * <mount>/client.js). Plain modern JavaScript, no build step, no
 * dependencies. Exposes the global `Faye` with the API of Faye's browser
 * client, so pages written for Faye work unchanged:
 *
 *   const client = new Faye.Client('/faye', { timeout: 60, retry: 5 });
 *   const sub = client.subscribe('/chat', (data) => show(data));
 *   sub.then(() => client.publish('/chat', { text: 'hi' }));
 *
 * The wire protocol is plain Bayeux 1.0, as Faye's server speaks it.
 *
 * Pieces, top to bottom:
 *   util          URLs, channel expansion, errors, thenables, events
 *   transports    websocket, eventsource, long-polling,
 *                 cross-origin-long-polling, callback-polling (JSONP)
 *   Dispatcher    envelopes (id -> message), per-tick batching, request
 *                 timeouts, retries with back-off, transport selection,
 *                 transport:up / transport:down
 *   Client        handshake / connect cycle, advice, subscriptions,
 *                 extensions, the public API
 */
(function (root) {
  'use strict';

  const VERSION = '0.1.0';
  const BAYEUX_VERSION = '1.0';

  // Transports in order of preference. A handshake goes over one of the
  // "mandatory" types only (the server must support them), as Faye's does.
  const ORDER = ['websocket', 'eventsource', 'long-polling',
                 'cross-origin-long-polling', 'callback-polling'];
  const MANDATORY = ['long-polling', 'callback-polling', 'in-process'];

  const MAX_URL = 2048;          // JSONP batches are cut to fit in this URL length
  const PROBE_MS = 5000;         // a WebSocket/EventSource that has not opened by then is unusable
  const MAX_BACKOFF_S = 60;      // longest wait between retries (unless `retry` is longer)
  const STOPPED = 'Client stopped by the server (advice reconnect "none")';

  const UNCONNECTED = 1, CONNECTING = 2, CONNECTED = 3, DISCONNECTED = 4;

  // ------------------------------------------------------------------ util

  const hasDocument = typeof document !== 'undefined';
  const here = () => (typeof location !== 'undefined' ? location.href : 'http://localhost/');

  function absolute(url) {
    return new URL(url, here()).href;
  }

  function sameOrigin(url) {
    if (typeof location === 'undefined') return false;
    return new URL(url, here()).origin === location.origin;
  }

  function later(fn) {
    setTimeout(fn, 0);
  }

  // Runs a user function; an exception is rethrown on a later turn so it
  // shows in the console without breaking the client's own state.
  function guarded(fn, self, args) {
    try {
      return fn.apply(self, args);
    } catch (e) {
      setTimeout(() => { throw e; }, 0);
      return undefined;
    }
  }

  // "/a/b" -> the patterns a subscription may have used to match it:
  // "/**", "/a/**", "/a/b", "/a/*".
  function expandChannel(name) {
    const segs = name.split('/').slice(1);
    const out = [name];
    let prefix = '';
    for (let i = 0; i < segs.length; i++) {
      out.push(prefix + '/**');
      prefix += '/' + segs[i];
    }
    const parent = segs.slice(0, -1).map((s) => '/' + s).join('');
    out.push(parent + '/*');
    return out;
  }

  // A Bayeux error: the server's "code:args:message" string, parsed.
  class BayeuxError extends Error {
    constructor(code, params, message) {
      super(message);
      this.name = 'Faye.Error';
      this.code = code;
      this.params = params || [];
    }

    toString() {
      return (this.code == null ? '' : this.code) + ':' + this.params.join(',') + ':' + this.message;
    }

    static parse(text) {
      if (text instanceof BayeuxError) return text;
      const s = text == null ? '' : String(text);
      const m = /^([0-9]{3}):([^:]*):([\s\S]*)$/.exec(s);
      if (!m) return new BayeuxError(null, [], s);
      return new BayeuxError(parseInt(m[1], 10), m[2] === '' ? [] : m[2].split(','), m[3]);
    }
  }

  // A thenable settled once. A rejection nobody listens to stays quiet.
  class Deferred {
    constructor() {
      this._promise = new Promise((resolve, reject) => {
        this._resolveFn = resolve;
        this._rejectFn = reject;
      });
      this._promise.catch(() => {});
      this._settled = false;
    }

    _resolve(value) {
      if (this._settled) return;
      this._settled = true;
      this._resolveFn(value);
    }

    _reject(error) {
      if (this._settled) return;
      this._settled = true;
      this._rejectFn(error);
    }

    then(onFulfilled, onRejected) {
      return this._promise.then(onFulfilled, onRejected);
    }

    catch(onRejected) {
      return this._promise.catch(onRejected);
    }

    finally(fn) {
      return this._promise.finally(fn);
    }
  }

  class Publication extends Deferred {}

  class Subscription extends Deferred {
    constructor(client, channels, callback, context) {
      super();
      this._client = client;
      this._channels = channels;
      this._callback = callback;
      this._context = context;
      this._withChannel = null;
      this._cancelled = false;
    }

    withChannel(fn, context) {
      this._withChannel = fn;
      if (context !== undefined) this._context = context;
      return this;
    }

    cancel() {
      if (this._cancelled) return;
      this._cancelled = true;
      for (const channel of this._channels) this._client.unsubscribe(channel, this);
    }

    unsubscribe() {
      this.cancel();
    }

    _call(message) {
      if (typeof this._callback === 'function')
        guarded(this._callback, this._context, [message.data]);
      if (typeof this._withChannel === 'function')
        guarded(this._withChannel, this._context, [message.channel, message.data]);
    }
  }

  // on/off/bind/unbind/trigger, mixed into Client.
  const Events = {
    on(event, fn, context) {
      if (!this._listeners) this._listeners = new Map();
      if (!this._listeners.has(event)) this._listeners.set(event, []);
      this._listeners.get(event).push({ fn, context });
      return this;
    },
    off(event, fn, context) {
      if (!this._listeners) return this;
      if (event === undefined) { this._listeners.clear(); return this; }
      const list = this._listeners.get(event);
      if (!list) return this;
      if (fn === undefined) { this._listeners.delete(event); return this; }
      this._listeners.set(event, list.filter((l) => l.fn !== fn || (context !== undefined && l.context !== context)));
      return this;
    },
    trigger(event, ...args) {
      const list = this._listeners && this._listeners.get(event);
      if (!list) return this;
      for (const l of list.slice()) guarded(l.fn, l.context === undefined ? this : l.context, args);
      return this;
    },
  };
  Events.bind = Events.on;
  Events.unbind = Events.off;

  function parseReply(text) {
    let value;
    try {
      value = JSON.parse(text);
    } catch (e) {
      return null;
    }
    if (value === null) return [];
    if (Array.isArray(value)) return value;
    if (typeof value === 'object') return [value];
    return null;
  }

  // ------------------------------------------------------------ transports
  //
  // A transport has:
  //   usable()                  -> Promise<boolean>
  //   request(messages, h)      sends; calls h.replies(messages) with the
  //                             response (request-response transports) or
  //                             h.failure(); returns { abort() }
  //   batching                  false: one message per request
  //   streaming                 replies arrive through dispatcher.receive()
  //   close()

  let jsonpCounter = 0;

  class XhrTransport {
    constructor(dispatcher, endpoint, name) {
      this.d = dispatcher;
      this.endpoint = endpoint;
      this.name = name;
      this.batching = true;
      this.streaming = false;
    }

    usable() {
      const ok = typeof XMLHttpRequest !== 'undefined' &&
        (this.name === 'long-polling'
          ? sameOrigin(this.endpoint)
          : !sameOrigin(this.endpoint) && 'withCredentials' in new XMLHttpRequest());
      return Promise.resolve(ok);
    }

    request(messages, h) {
      const xhr = new XMLHttpRequest();
      const json = JSON.stringify(messages);
      let done = false;
      const finish = (ok) => {
        if (done) return;
        done = true;
        let replies = null;
        if (ok && ((xhr.status >= 200 && xhr.status < 300) || xhr.status === 304))
          replies = parseReply(xhr.responseText);
        if (replies) h.replies(replies);
        else h.failure();
      };
      xhr.open('POST', this.endpoint, true);
      if (this.name === 'long-polling') {
        xhr.setRequestHeader('Content-Type', 'application/json');
        xhr.setRequestHeader('Pragma', 'no-cache');
        xhr.setRequestHeader('X-Requested-With', 'XMLHttpRequest');
      } else {
        // A form body with no custom header is a "simple" CORS request:
        // no preflight unless setHeader() added headers.
        xhr.withCredentials = true;
        xhr.setRequestHeader('Content-Type', 'application/x-www-form-urlencoded');
      }
      for (const [name, value] of Object.entries(this.d.headers))
        xhr.setRequestHeader(name, value);
      xhr.onload = () => finish(true);
      xhr.onerror = xhr.onabort = xhr.ontimeout = () => finish(false);
      xhr.send(this.name === 'long-polling' ? json : 'message=' + encodeURIComponent(json));
      return {
        abort() {
          if (done) return;
          done = true;
          xhr.abort();
        },
      };
    }

    close() {}
  }

  class JsonpTransport {
    constructor(dispatcher, endpoint) {
      this.d = dispatcher;
      this.endpoint = endpoint;
      this.name = 'callback-polling';
      this.batching = true;
      this.streaming = false;
      this.maxUrl = MAX_URL;
    }

    usable() {
      return Promise.resolve(hasDocument);
    }

    urlFor(messages, callbackName) {
      const sep = this.endpoint.indexOf('?') < 0 ? '?' : '&';
      return this.endpoint + sep + 'message=' + encodeURIComponent(JSON.stringify(messages)) +
        '&jsonp=' + callbackName;
    }

    request(messages, h) {
      const name = '__bxjsonp' + (++jsonpCounter) + '__';
      const script = document.createElement('script');
      let done = false;
      const cleanup = () => {
        done = true;
        // A late answer must still find a function to call.
        root[name] = () => { delete root[name]; };
        if (script.parentNode) script.parentNode.removeChild(script);
      };
      root[name] = (value) => {
        if (done) return;
        cleanup();
        delete root[name];
        const replies = value === null ? [] : Array.isArray(value) ? value
          : typeof value === 'object' ? [value] : null;
        if (replies) h.replies(replies);
        else h.failure();
      };
      script.async = true;
      script.onerror = () => {
        if (done) return;
        cleanup();
        h.failure();
      };
      script.src = this.urlFor(messages, name);
      (document.head || document.documentElement).appendChild(script);
      return {
        abort() {
          if (!done) cleanup();
        },
      };
    }

    close() {}
  }

  // One socket per client; every message is its own frame. The socket is
  // opened by usable() (speculatively, while the handshake is in flight)
  // and kept; when an open socket drops, the dispatcher fails what was in
  // flight on it and selects a transport again.
  class WebSocketTransport {
    constructor(dispatcher, endpoint) {
      this.d = dispatcher;
      this.url = endpoint.replace(/^http/, 'ws');
      this.name = 'websocket';
      this.batching = false;
      this.streaming = true;
      this.socket = null;
      this.opening = null;
    }

    usable() {
      if (typeof WebSocket === 'undefined') return Promise.resolve(false);
      return this._open().then(() => true, () => false);
    }

    _open() {
      if (this.socket && this.socket.readyState === 1) return Promise.resolve();
      if (this.opening) return this.opening;
      this.opening = new Promise((resolve, reject) => {
        let socket;
        try {
          socket = new WebSocket(this.url);
        } catch (e) {
          this.opening = null;
          reject(e);
          return;
        }
        let opened = false;
        const timer = setTimeout(() => {
          if (!opened) socket.close();
        }, PROBE_MS);
        socket.onopen = () => {
          opened = true;
          clearTimeout(timer);
          this.socket = socket;
          this.opening = null;
          resolve();
        };
        socket.onmessage = (event) => {
          const messages = parseReply(event.data);
          if (messages) this.d.receive(messages, this);
        };
        socket.onclose = () => {
          clearTimeout(timer);
          if (!opened) {
            this.opening = null;
            reject(new Error('websocket closed before opening'));
            return;
          }
          if (this.socket !== socket) return;
          this.socket = null;
          if (!socket._closing) this.d.transportBroken(this);
        };
        socket.onerror = () => {};
      });
      return this.opening;
    }

    request(messages, h) {
      this._open().then(() => {
        try {
          this.socket.send(JSON.stringify(messages));
        } catch (e) {
          h.failure();
        }
      }, () => h.failure());
      return { abort() {} };
    }

    close() {
      const socket = this.socket;
      this.socket = null;
      if (socket) {
        socket._closing = true;
        socket.close();
      }
    }
  }

  // Deliveries arrive on an EventSource at <endpoint>/<clientId>; messages
  // are still sent by same-origin XHR (connects return at once, with
  // advice.interval = the server's timeout).
  class EventSourceTransport {
    constructor(dispatcher, endpoint) {
      this.d = dispatcher;
      this.endpoint = endpoint;
      this.name = 'eventsource';
      this.batching = true;
      this.streaming = true;
      this.xhr = new XhrTransport(dispatcher, endpoint, 'long-polling');
      this.source = null;
      this.clientId = null;
      this.opening = null;
    }

    usable() {
      const clientId = this.d.clientId;
      if (typeof EventSource === 'undefined' || typeof XMLHttpRequest === 'undefined' ||
          !clientId || !sameOrigin(this.endpoint))
        return Promise.resolve(false);
      if (this.source && this.clientId === clientId) return Promise.resolve(true);
      if (this.opening && this.clientId === clientId) return this.opening;
      this.close();
      this.clientId = clientId;
      const url = new URL(this.endpoint);
      url.pathname = url.pathname.replace(/\/+$/, '') + '/' + clientId;
      const p = this.opening = new Promise((resolve) => {
        let source;
        try {
          source = new EventSource(url.href);
        } catch (e) {
          resolve(false);
          return;
        }
        let opened = false;
        const timer = setTimeout(() => {
          if (opened) return;
          source.close();
          resolve(false);
        }, PROBE_MS);
        source.onopen = () => {
          if (opened) return;
          opened = true;
          clearTimeout(timer);
          this.source = source;
          resolve(true);
        };
        source.onmessage = (event) => {
          const messages = parseReply(event.data);
          if (messages) this.d.receive(messages, this);
        };
        source.onerror = () => {
          source.close();       // no automatic reconnection: the client decides
          if (!opened) {
            clearTimeout(timer);
            resolve(false);
            return;
          }
          if (this.source !== source) return;
          this.source = null;
          this.d.transportBroken(this);
        };
      });
      p.then(() => { if (this.opening === p) this.opening = null; });
      return p;
    }

    request(messages, h) {
      return this.xhr.request(messages, h);
    }

    close() {
      const source = this.source;
      this.source = null;
      this.opening = null;
      if (source) source.close();
    }
  }

  const TRANSPORTS = {
    'websocket': (d, url) => new WebSocketTransport(d, url),
    'eventsource': (d, url) => new EventSourceTransport(d, url),
    'long-polling': (d, url) => new XhrTransport(d, url, 'long-polling'),
    'cross-origin-long-polling': (d, url) => new XhrTransport(d, url, 'cross-origin-long-polling'),
    'callback-polling': (d, url) => new JsonpTransport(d, url),
  };

  // ------------------------------------------------------------ dispatcher

  class Dispatcher {
    constructor(client, endpoint, options) {
      this.client = client;
      this.endpoint = absolute(endpoint);
      this.endpoints = options.endpoints || {};
      this.retry = options.retry || 5;                 // seconds
      this.timeout = options.timeout || 60;            // seconds; advice overrides
      this.headers = {};
      this.disabled = new Set();
      this.clientId = null;
      this.envelopes = new Map();                      // id -> envelope
      this.requests = new Set();                       // requests in flight
      this.outbox = [];
      this.flushing = false;
      this.cache = new Map();                          // name -> transport
      this.transport = null;
      this.selecting = null;
      this.generation = 0;
      this.allowed = MANDATORY;
      this.state = 0;                                  // 0 unknown, 1 up, 2 down
      this.failures = 0;
      this.warned = false;
      this.degraded = false;
    }

    connectionTypes() {
      return ORDER.filter((t) => !this.disabled.has(t));
    }

    transportFor(name) {
      let t = this.cache.get(name);
      if (!t) {
        t = TRANSPORTS[name](this, absolute(this.endpoints[name] || this.endpoint));
        this.cache.set(name, t);
      }
      return t;
    }

    // Opens the WebSocket while the handshake is in flight.
    warmUp() {
      if (!this.disabled.has('websocket') && typeof WebSocket !== 'undefined')
        this.transportFor('websocket').usable();
    }

    // The first transport of ours, in the allowed list, not disabled and
    // usable; `final` (after a handshake) closes the streams not chosen.
    selectTransport(types, final) {
      this.allowed = types;
      const generation = ++this.generation;
      this.transport = null;
      const p = this.selecting = (async () => {
        await null;
        let chosen = null;
        for (const name of ORDER) {
          if (!types.includes(name) || this.disabled.has(name)) continue;
          const t = this.transportFor(name);
          if (await t.usable()) { chosen = t; break; }
        }
        if (generation !== this.generation) return this.ready();
        this.selecting = null;
        this.use(chosen, final);
        return chosen;
      })();
      return p;
    }

    use(transport, final) {
      const previous = this.transport;
      this.transport = transport;
      if (!transport) {
        if (!this.warned) {
          this.warned = true;
          if (typeof console !== 'undefined')
            console.error('Faye: could not find a usable connection type for ' + this.endpoint);
        }
        return;
      }
      this.warned = false;
      for (const t of this.cache.values()) {
        if (t === transport || !t.streaming) continue;
        if (final || t === previous) {
          this.failRequests(t, true);
          t.close();
        }
      }
    }

    // A transport broke: choose again now, and once more when the server
    // answers again (what was usable during an outage may not be the best).
    ready() {
      if (this.transport) return Promise.resolve(this.transport);
      if (this.selecting) return this.selecting;
      this.degraded = true;
      return this.selectTransport(this.allowed, true);
    }

    get connectionType() {
      return this.transport ? this.transport.name : null;
    }

    // Queue a message (already through the outgoing extensions).
    send(message, options) {
      const envelope = {
        message,
        attempts: options.attempts,
        deadline: options.deadline,
        onAbort: options.onAbort,
        request: null,
        timer: null,
      };
      this.envelopes.set(message.id, envelope);
      this.enqueue(envelope);
    }

    enqueue(envelope) {
      this.outbox.push(envelope);
      if (this.flushing) return;
      this.flushing = true;
      later(() => this.flush());
    }

    async flush() {
      let transport;
      try {
        transport = await this.ready();
      } catch (e) {
        transport = null;
      }
      this.flushing = false;
      const batch = this.outbox.filter((e) => this.envelopes.get(e.message.id) === e &&
                                              !e.request && !e.timer);
      this.outbox = [];
      if (batch.length === 0) return;
      const now = Date.now();
      const live = [];
      for (const e of batch) {
        if ((e.attempts !== undefined && e.attempts <= 0) || (e.deadline !== undefined && now > e.deadline)) {
          this.envelopes.delete(e.message.id);
          if (e.onAbort) e.onAbort();
        } else {
          if (e.attempts !== undefined) e.attempts--;
          live.push(e);
        }
      }
      if (live.length === 0) return;
      if (!transport) {
        const request = { envelopes: live, done: false, transport: null, timer: null };
        for (const e of live) e.request = request;
        this.failRequest(request);
        return;
      }
      for (const e of live)
        if (e.message.channel === '/meta/connect') e.message.connectionType = transport.name;
      if (!transport.batching) {
        for (const e of live) this.start(transport, [e]);
        return;
      }
      // Cut batches for the URL of a JSONP request.
      let group = [], size = 0;
      for (const e of live) {
        const n = transport.maxUrl ? encodeURIComponent(JSON.stringify(e.message)).length + 1 : 0;
        if (group.length && transport.maxUrl && size + n > transport.maxUrl - this.endpoint.length - 64) {
          this.start(transport, group);
          group = [];
          size = 0;
        }
        group.push(e);
        size += n;
      }
      if (group.length) this.start(transport, group);
    }

    start(transport, envelopes) {
      const request = { envelopes, done: false, transport, timer: null, handle: null };
      let messages = envelopes.map((e) => e.message);
      // A connect sent with other messages must not be held, or their
      // replies would wait for the long-poll.
      if (messages.length > 1) {
        messages = messages.map((m) => (m.channel === '/meta/connect'
          ? Object.assign({}, m, { advice: Object.assign({}, m.advice, { timeout: 0 }) }) : m));
      }
      for (const e of envelopes) e.request = request;
      this.requests.add(request);
      request.timer = setTimeout(() => this.failRequest(request), 1200 * this.timeout);
      request.handle = transport.request(messages, {
        replies: (replies) => {
          if (request.done) return;
          this.receive(replies, transport);
          this.finishRequest(request);
        },
        failure: () => this.failRequest(request),
      });
    }

    // The response came: what it did not answer is tried again.
    finishRequest(request) {
      if (request.done) return;
      request.done = true;
      clearTimeout(request.timer);
      this.requests.delete(request);
      for (const e of request.envelopes) {
        if (e.request !== request) continue;
        e.request = null;
        if (this.envelopes.get(e.message.id) === e) this.retryLater(e, false);
      }
    }

    failRequest(request, immediate) {
      if (request.done) return;
      request.done = true;
      clearTimeout(request.timer);
      if (request.handle) request.handle.abort();
      this.requests.delete(request);
      const pending = [];
      for (const e of request.envelopes) {
        if (e.request !== request) continue;
        e.request = null;
        if (this.envelopes.get(e.message.id) === e) pending.push(e);
      }
      // counted before the retries are timed: the first retry waits
      // `retry`, each further one 1.5 times longer
      if (pending.length && !immediate) {
        this.failures++;
        this.down();
      }
      for (const e of pending) this.retryLater(e, immediate);
    }

    failRequests(transport, immediate) {
      for (const r of Array.from(this.requests))
        if (r.transport === transport) this.failRequest(r, immediate);
    }

    backoff() {
      const cap = Math.max(this.retry, MAX_BACKOFF_S);
      return 1000 * Math.min(this.retry * Math.pow(1.5, Math.max(0, this.failures - 1)), cap);
    }

    retryLater(envelope, immediate) {
      if (immediate) {
        this.enqueue(envelope);
        return;
      }
      envelope.timer = setTimeout(() => {
        envelope.timer = null;
        if (this.envelopes.get(envelope.message.id) === envelope) this.enqueue(envelope);
      }, this.backoff());
    }

    // A WebSocket or EventSource that was open has gone.
    transportBroken(transport) {
      const wasCurrent = this.transport === transport;
      this.failRequests(transport, false);
      if (wasCurrent) {
        this.transport = null;
        this.down();
        this.client._transportBroken();
      }
    }

    receive(messages, transport) {
      for (const m of messages) {
        if (!m || typeof m !== 'object') continue;
        if (m.successful === undefined || m.id == null) continue;
        const e = this.envelopes.get(m.id);
        if (!e) continue;
        this.envelopes.delete(m.id);
        clearTimeout(e.timer);
        e.timer = null;
        const r = e.request;
        if (r && !r.done && r.envelopes.every((x) => this.envelopes.get(x.message.id) !== x)) {
          r.done = true;
          clearTimeout(r.timer);
          this.requests.delete(r);
        }
      }
      this.failures = 0;
      this.up();
      for (const m of messages)
        if (m && typeof m === 'object') this.client._receive(m);
    }

    up() {
      if (this.state === 1) return;
      this.state = 1;
      this.client.trigger('transport:up');
      if (this.degraded && !this.selecting && this.allowed !== MANDATORY) {
        this.degraded = false;
        this.selectTransport(this.allowed, true);
      }
    }

    down() {
      if (this.state === 2) return;
      this.state = 2;
      this.client.trigger('transport:down');
    }

    // Forget everything in flight and close the streams (disconnect).
    close() {
      for (const e of this.envelopes.values()) clearTimeout(e.timer);
      this.envelopes.clear();
      for (const r of this.requests) {
        r.done = true;
        clearTimeout(r.timer);
        if (r.handle) r.handle.abort();
      }
      this.requests.clear();
      this.outbox = [];
      for (const t of this.cache.values()) t.close();
      this.cache.clear();
      this.transport = null;
      this.selecting = null;
      this.generation++;
      this.allowed = MANDATORY;
      this.clientId = null;
    }
  }

  // ---------------------------------------------------------------- client

  class Client {
    constructor(endpoint, options) {
      options = options || {};
      this._endpoint = endpoint || '/bayeux';
      this._dispatcher = new Dispatcher(this, this._endpoint, options);
      this._state = UNCONNECTED;
      this._clientId = null;
      this._messageId = 0;
      this._advice = {
        reconnect: 'retry',
        interval: 1000 * (options.interval || 0),
        timeout: 1000 * (options.timeout || 60),
      };
      this._channels = new Map();      // channel -> { subs: Set, state, waiters }
      this._extensions = [];
      this._callbacks = new Map();     // message id -> { fn, clientId }
      this._waiting = [];              // functions waiting for a client id
      this._connecting = false;        // a /meta/connect is in flight
      this._cycleTimer = null;
      this._handshakeFailures = 0;

      if (typeof window !== 'undefined' && window.addEventListener)
        window.addEventListener('beforeunload', () => this._unload());
    }

    getClientId() {
      return this._clientId;
    }

    getState() {
      return { 1: 'UNCONNECTED', 2: 'CONNECTING', 3: 'CONNECTED', 4: 'DISCONNECTED' }[this._state];
    }

    disable(feature) {
      this._dispatcher.disabled.add(feature);
      return this;
    }

    setHeader(name, value) {
      this._dispatcher.headers[name] = value;
      return this;
    }

    addExtension(extension) {
      this._extensions.push(extension);
      if (extension && typeof extension.added === 'function') guarded(extension.added, extension, [this]);
      return this;
    }

    removeExtension(extension) {
      const before = this._extensions.length;
      this._extensions = this._extensions.filter((e) => e !== extension);
      if (before !== this._extensions.length && extension && typeof extension.removed === 'function')
        guarded(extension.removed, extension, [this]);
      return this;
    }

    // Makes sure the client is (or gets) connected; `callback` runs once it
    // has a client id.
    connect(callback, context) {
      if (this._advice.reconnect === 'none') return;
      if (this._state === DISCONNECTED) this._state = UNCONNECTED;
      if (typeof callback === 'function') this._waiting.push(() => callback.call(context));
      if (this._state === CONNECTED) this._flushWaiting();
      else if (this._state === UNCONNECTED) this.handshake();
    }

    handshake() {
      if (this._advice.reconnect === 'none' || this._state !== UNCONNECTED) return;
      this._state = CONNECTING;
      this._clearCycle();
      const d = this._dispatcher;
      d.clientId = null;
      d.selectTransport(MANDATORY, false);
      d.warmUp();
      this._send({
        channel: '/meta/handshake',
        version: BAYEUX_VERSION,
        supportedConnectionTypes: d.connectionTypes(),
      }, (reply) => this._handshakeReply(reply));
    }

    _handshakeReply(reply) {
      if (this._state !== CONNECTING) return;
      if (!reply.successful || !reply.clientId) {
        this._state = UNCONNECTED;
        this._handshakeFailures++;
        if (this._advice.reconnect === 'none') return;
        const s = this._dispatcher.retry * Math.pow(1.5, this._handshakeFailures - 1);
        this._schedule(() => this.handshake(), 1000 * Math.min(s, Math.max(this._dispatcher.retry, MAX_BACKOFF_S)));
        return;
      }
      this._handshakeFailures = 0;
      this._state = CONNECTED;
      this._clientId = reply.clientId;
      const d = this._dispatcher;
      d.clientId = reply.clientId;
      d.degraded = false;
      d.selectTransport(reply.supportedConnectionTypes || MANDATORY, true);
      // Restore every subscription of this page: one entry per channel, so
      // nothing is duplicated whatever happened before.
      for (const [channel, entry] of this._channels) this._sendSubscribe(channel, entry);
      this._connect();
      this._flushWaiting();
    }

    _flushWaiting() {
      const waiting = this._waiting;
      this._waiting = [];
      for (const fn of waiting) guarded(fn, this, []);
    }

    // The server said reconnect "none": this client sends nothing more.
    // Faye's leaves such calls pending for ever; ours fail at once.
    _stopped() {
      return this._advice.reconnect === 'none';
    }

    _whenConnected(fn) {
      if (this._stopped()) return;
      if (this._state === CONNECTED) fn();
      else this.connect(fn);
    }

    _connect() {
      if (this._advice.reconnect === 'none' || this._state !== CONNECTED || this._connecting) return;
      this._clearCycle();
      this._connecting = true;
      // wait for the transport choice, so connectionType (as extensions see
      // it) is the transport that carries the connect
      this._dispatcher.ready().then((transport) => transport, () => null).then((transport) => {
        if (this._state !== CONNECTED) {
          this._connecting = false;
          if (this._state === UNCONNECTED) this._cycle();
          return;
        }
        this._send({
          channel: '/meta/connect',
          clientId: this._clientId,
          connectionType: transport ? transport.name : 'long-polling',
        }, () => {
          this._connecting = false;
          this._cycle();
        });
      });
    }

    // After a connect reply (or advice): the next connect, or a handshake.
    _cycle() {
      if (this._advice.reconnect === 'none' || this._state === DISCONNECTED) return;
      if (this._state === UNCONNECTED) this._schedule(() => this.handshake(), this._advice.interval);
      else if (this._state === CONNECTED) this._schedule(() => this._connect(), this._advice.interval);
    }

    _schedule(fn, ms) {
      this._clearCycle();
      this._cycleTimer = setTimeout(() => {
        this._cycleTimer = null;
        fn();
      }, Math.max(0, ms || 0));
    }

    _clearCycle() {
      if (this._cycleTimer) clearTimeout(this._cycleTimer);
      this._cycleTimer = null;
    }

    // A stream that was up went down: poll now rather than after the
    // advised interval (an EventSource client may be waiting for minutes).
    _transportBroken() {
      if (this._state === CONNECTED && !this._connecting) this._connect();
    }

    _handleAdvice(advice, stale) {
      if (typeof advice.interval === 'number') this._advice.interval = advice.interval;
      if (typeof advice.timeout === 'number') {
        this._advice.timeout = advice.timeout;
        // 0 (an EventSource connect) says "answered at once", not "give up at once"
        if (advice.timeout > 0) this._dispatcher.timeout = advice.timeout / 1000;
      }
      if (stale || typeof advice.reconnect !== 'string') return;
      this._advice.reconnect = advice.reconnect;
      if (advice.reconnect === 'handshake' && this._state !== DISCONNECTED) {
        this._forgetClient();
        if (!this._connecting) this._cycle();
      } else if (advice.reconnect === 'none') {
        this._clearCycle();
      }
    }

    _forgetClient() {
      if (this._state === CONNECTING) return;
      this._state = UNCONNECTED;
      this._clientId = null;
      this._dispatcher.clientId = null;
      for (const entry of this._channels.values()) entry.state = 'new';
    }

    _nextId() {
      this._messageId = this._messageId >= 0xffffffff ? 1 : this._messageId + 1;
      return this._messageId.toString(36);
    }

    _pipe(stage, message, done) {
      const extensions = this._extensions.slice();
      const step = (i, msg) => {
        if (!msg) return;
        while (i < extensions.length && !(extensions[i] && typeof extensions[i][stage] === 'function')) i++;
        if (i >= extensions.length) {
          done(msg);
          return;
        }
        let called = false;
        const next = (m) => {
          if (called) return;
          called = true;
          step(i + 1, m);
        };
        try {
          extensions[i][stage](msg, next);
        } catch (e) {
          setTimeout(() => { throw e; }, 0);
          next(msg);
        }
      };
      step(0, message);
    }

    _send(message, onReply, options) {
      message.id = this._nextId();
      const clientId = this._clientId;
      this._pipe('outgoing', message, (msg) => {
        if (onReply) this._callbacks.set(msg.id, { fn: onReply, clientId });
        this._dispatcher.send(msg, options || {});
      });
    }

    _receive(message) {
      this._pipe('incoming', message, (msg) => {
        const callback = msg.successful !== undefined && msg.id != null ? this._callbacks.get(msg.id) : null;
        if (msg.advice) {
          // advice answering a message of a session we already left is old news
          const stale = callback ? callback.clientId !== this._clientId && callback.clientId != null : false;
          this._handleAdvice(msg.advice, stale);
        }
        this._deliver(msg);
        if (!callback) return;
        this._callbacks.delete(msg.id);
        callback.fn(msg);
      });
    }

    _deliver(message) {
      if (typeof message.channel !== 'string' || message.data === undefined) return;
      for (const pattern of expandChannel(message.channel)) {
        const entry = this._channels.get(pattern);
        if (!entry) continue;
        for (const sub of Array.from(entry.subs)) sub._call(message);
      }
    }

    // ---- public API

    subscribe(channel, callback, context) {
      const channels = Array.isArray(channel) ? channel.slice() : [channel];
      const sub = new Subscription(this, channels, callback, context);
      const acks = [];
      for (const name of channels) {
        let entry = this._channels.get(name);
        if (!entry) {
          entry = { subs: new Set(), state: 'new', waiters: [] };
          this._channels.set(name, entry);
        }
        entry.subs.add(sub);
        if (entry.state === 'subscribed') {
          acks.push(Promise.resolve());
          continue;
        }
        acks.push(new Promise((resolve, reject) => entry.waiters.push({ resolve, reject })));
        if (entry.state === 'new') this._sendSubscribe(name, entry);
      }
      Promise.all(acks).then(() => sub._resolve(), (err) => sub._reject(err));
      return sub;
    }

    // Not connected: the handshake that connect() starts subscribes every
    // channel of the map, this one included.
    _sendSubscribe(name, entry) {
      if (this._stopped()) {
        this._channels.delete(name);
        this._settle(entry, new BayeuxError(null, [], STOPPED));
        return;
      }
      entry.state = 'pending';
      if (this._state !== CONNECTED) {
        this.connect();
        return;
      }
      const clientId = this._clientId;
      this._send({ channel: '/meta/subscribe', clientId, subscription: name }, (reply) => {
        if (this._channels.get(name) !== entry) {
          // cancelled while the subscribe was in flight
          this._settle(entry, reply.successful ? null : BayeuxError.parse(reply.error));
          return;
        }
        // The answer for a session already left (its 401 may come after
        // the new handshake): the handshake of the new session subscribes
        // this channel again, and that answer settles it. Acting on this
        // one would drop the new session and handshake once more.
        if (clientId !== this._clientId) return;
        if (reply.successful) {
          entry.state = 'subscribed';
          this._settle(entry, null);
        } else {
          // every refusal rejects, a 401 too (an auth extension's, or a
          // session the server forgot), as Faye's client does: a new
          // session comes only from advice reconnect "handshake", which a
          // forgotten session's next connect brings
          this._channels.delete(name);
          this._settle(entry, BayeuxError.parse(reply.error));
        }
      });
    }

    _settle(entry, error) {
      const waiters = entry.waiters;
      entry.waiters = [];
      for (const w of waiters) (error ? w.reject(error) : w.resolve());
    }

    unsubscribe(channel, target) {
      const entry = this._channels.get(channel);
      if (!entry) return;
      for (const sub of Array.from(entry.subs))
        if (target === undefined || target === null || sub === target || sub._callback === target)
          entry.subs.delete(sub);
      if (entry.subs.size > 0) return;
      this._channels.delete(channel);
      if (this._state !== CONNECTED || entry.state === 'new') return;
      this._send({ channel: '/meta/unsubscribe', clientId: this._clientId, subscription: channel });
    }

    publish(channel, data, options) {
      options = options || {};
      const pub = new Publication();
      const sendOptions = {
        attempts: options.attempts,
        deadline: options.deadline === undefined ? undefined : Date.now() + 1000 * options.deadline,
        onAbort: () => pub._reject(new BayeuxError(null, [], 'Message could not be delivered')),
      };
      if (this._stopped()) {
        pub._reject(new BayeuxError(null, [], STOPPED));
        return pub;
      }
      this._whenConnected(() => {
        this._send({ channel, data, clientId: this._clientId }, (reply) => {
          if (reply.successful) pub._resolve();
          else pub._reject(BayeuxError.parse(reply.error));
        }, sendOptions);
      });
      return pub;
    }

    disconnect() {
      const pub = new Publication();
      this._waiting = [];
      if (this._state !== CONNECTED) {
        this._state = DISCONNECTED;
        this._clearCycle();
        this._dispatcher.close();
        pub._resolve();
        return pub;
      }
      this._state = DISCONNECTED;
      this._clearCycle();
      // (unless the page called connect() or subscribe() again meanwhile)
      const finish = () => { if (this._state === DISCONNECTED) this._finishDisconnect(); };
      this._send({ channel: '/meta/disconnect', clientId: this._clientId }, (reply) => {
        finish();
        if (reply.successful) pub._resolve();
        else pub._reject(BayeuxError.parse(reply.error));
      }, { attempts: 1, onAbort: () => { finish(); pub._resolve(); } });
      return pub;
    }

    _finishDisconnect() {
      this._dispatcher.close();
      this._channels.clear();
      this._callbacks.clear();
      this._connecting = false;
      this._clientId = null;
    }

    // Page unload: tell the server with a beacon, which survives the page.
    _unload() {
      if (this._dispatcher.disabled.has('autodisconnect') || this._state !== CONNECTED) return;
      const message = { channel: '/meta/disconnect', clientId: this._clientId, id: this._nextId() };
      this._state = DISCONNECTED;
      this._pipe('outgoing', message, (msg) => {
        const body = 'message=' + encodeURIComponent(JSON.stringify([msg]));
        let sent = false;
        if (typeof navigator !== 'undefined' && navigator.sendBeacon) {
          try {
            sent = navigator.sendBeacon(this._dispatcher.endpoint,
              new Blob([body], { type: 'application/x-www-form-urlencoded' }));
          } catch (e) {
            sent = false;
          }
        }
        if (!sent && this._dispatcher.transport && this._dispatcher.transport.name === 'websocket') {
          const ws = this._dispatcher.transport;
          if (ws.socket) ws.socket.send(JSON.stringify([msg]));
        }
      });
      this._dispatcher.close();
    }
  }

  // ------------------------------------------------------------- history

  // Channel history with recovery (docs/delivery.md), an extension the
  // page adds: client.addExtension(new Faye.History({ onReset })). It
  // remembers the last offset and epoch it saw on each history channel;
  // every /meta/subscribe (a re-handshake resubscribes) names them in
  // ext.history, so the server replays what was missed, in order. A
  // message at or below an offset already seen is dropped (no doubles).
  // onReset(channel, reason) is called when the server cannot replay
  // ("too old", "epoch changed", "unknown offset"): the page reloads.
  class History {
    constructor(options) {
      this._onReset = options && options.onReset;
      this._seen = new Map();           // channel -> { offset, epoch }
    }

    // The positions the extension holds, for a page that keeps them over a
    // reload (give them back with restore()).
    positions() {
      const out = {};
      for (const [ch, pos] of this._seen) out[ch] = { offset: pos.offset, epoch: pos.epoch };
      return out;
    }

    restore(positions) {
      for (const ch of Object.keys(positions || {})) {
        const pos = positions[ch];
        if (pos && Number.isInteger(pos.offset) && typeof pos.epoch === 'string')
          this._seen.set(ch, { offset: pos.offset, epoch: pos.epoch });
      }
    }

    outgoing(message, callback) {
      if (message.channel === '/meta/subscribe') {
        const subs = [].concat(message.subscription);
        const want = {};
        for (const [ch, pos] of this._seen) {
          const covering = expandChannel(ch);
          if (subs.some((s) => covering.includes(s))) want[ch] = { offset: pos.offset, epoch: pos.epoch };
        }
        message.ext = Object.assign({}, message.ext, { history: want });
      }
      callback(message);
    }

    incoming(message, callback) {
      const h = message.ext && message.ext.history;
      if (message.channel === '/meta/subscribe') {
        if (message.successful && h && typeof h === 'object') this._answered(h);
        callback(message);
        return;
      }
      if (!h || typeof message.channel !== 'string' || message.channel.startsWith('/meta/') ||
          !Number.isInteger(h.offset) || typeof h.epoch !== 'string') {
        callback(message);
        return;
      }
      const seen = this._seen.get(message.channel);
      if (seen && seen.epoch === h.epoch && h.offset <= seen.offset) {
        callback(null);                 // replayed, and already had it
        return;
      }
      this._seen.set(message.channel, { offset: h.offset, epoch: h.epoch });
      callback(message);
    }

    _answered(answer) {
      for (const ch of Object.keys(answer)) {
        const pos = answer[ch];
        if (!pos || !Number.isInteger(pos.offset) || typeof pos.epoch !== 'string') continue;
        const seen = this._seen.get(ch);
        if (pos.recovered === false) {
          // start again from where the channel stands now
          if (!(seen && seen.epoch === pos.epoch && seen.offset > pos.offset))
            this._seen.set(ch, { offset: pos.offset, epoch: pos.epoch });
          if (typeof this._onReset === 'function') guarded(this._onReset, null, [ch, pos.reason]);
        } else if (!seen) {
          this._seen.set(ch, { offset: pos.offset, epoch: pos.epoch });
        }
      }
    }
  }

  // Acknowledged delivery (docs/delivery.md), opt-in, one per client:
  //   client.addExtension(new Faye.AckExtension());
  // The same wire as CometD's AckExtension: ext.ack = true on the
  // handshake; once the server answers ext.ack = true, every /meta/connect
  // carries the id of the last batch received (its connect answer's
  // ext.ack), and a batch whose answer was lost on the way comes again,
  // ahead of newer messages. A server without it ignores ext.ack. The
  // client then leaves EventSource aside: acknowledged messages ride
  // /meta/connect answers only, and an EventSource session's connects are
  // answered at once and advised to wait a whole timeout.
  class AckExtension {
    constructor() {
      this.enabled = false;      // the server said yes at the last handshake
      this.batch = 0;            // the last batch id received
    }

    added(client) {
      client.disable('eventsource');
    }

    outgoing(message, callback) {
      if (message.channel === '/meta/handshake') {
        message.ext = Object.assign({}, message.ext, { ack: true });
        this.enabled = false;
        this.batch = 0;
      } else if (message.channel === '/meta/connect' && this.enabled) {
        message.ext = Object.assign({}, message.ext, { ack: this.batch });
      }
      callback(message);
    }

    incoming(message, callback) {
      const ack = message.ext && message.ext.ack;
      if (message.channel === '/meta/handshake' && message.successful) {
        // CometD servers may answer { enabled, batch } instead of true
        this.enabled = ack === true || (!!ack && typeof ack === 'object' && ack.enabled === true);
        if (this.enabled && typeof ack === 'object' && typeof ack.batch === 'number') this.batch = ack.batch;
      } else if (message.channel === '/meta/connect' && message.successful && this.enabled &&
                 typeof ack === 'number') {
        this.batch = ack;
      }
      callback(message);
    }
  }

  Object.assign(Client.prototype, Events);
  Client.prototype.UNCONNECTED = UNCONNECTED;
  Client.prototype.CONNECTING = CONNECTING;
  Client.prototype.CONNECTED = CONNECTED;
  Client.prototype.DISCONNECTED = DISCONNECTED;

  const Faye = {
    VERSION,
    BAYEUX_VERSION,
    Client,
    Subscription,
    Publication,
    AckExtension,
    Error: BayeuxError,
    Channel: { expand: expandChannel },
    History,
  };

  root.Faye = Faye;
  if (typeof module === 'object' && module && module.exports) module.exports = Faye;
})(typeof window !== 'undefined' ? window : globalThis);
