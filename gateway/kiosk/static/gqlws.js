// A small graphql-transport-ws client (https://github.com/enisdenjo/graphql-ws,
// PROTOCOL.md) for the kiosk: one WebSocket carries every subscription, it
// reconnects by itself with backoff, and it reports its state so the page can
// show when what it displays is no longer live.

const PROTOCOL = "graphql-transport-ws";

// Close codes of the protocol that mean "your credentials were refused".
const AUTH_CODES = new Set([4401, 4403]);
// Close codes after which reconnecting with the same request cannot help.
const FATAL_CODES = new Set([4400, 4406]);

/** Connection states reported through `onState`. */
export const State = Object.freeze({
  CONNECTING: "connecting", // first connection attempt, nothing shown yet
  LIVE: "live", // acknowledged: results arriving now are current
  STALE: "stale", // the connection went away; retrying
  UNAUTHORIZED: "unauthorized", // the gateway refused the token
  FAILED: "failed", // the gateway refused the protocol; retrying will not help
});

/**
 * A graphql-transport-ws client with automatic reconnection.
 *
 * Subscriptions outlive connections: after every reconnect they are sent again, and
 * the gateway's live queries answer each at once with the current result.
 */
export class LiveClient {
  /**
   * @param {object} options
   * @param {string} options.url ws:// or wss:// URL of the GraphQL endpoint
   * @param {() => object} [options.connectionParams] payload of connection_init
   * @param {(state: string, detail: object) => void} [options.onState]
   * @param {number} [options.pingInterval] ms between keep-alive pings
   * @param {number} [options.pongTimeout] ms to wait for a pong before reconnecting
   * @param {number} [options.ackTimeout] ms to wait for connection_ack
   * @param {number} [options.retryMin] first reconnect delay, ms
   * @param {number} [options.retryMax] largest reconnect delay, ms
   * @param {number} [options.refusedRetry] delay before trying again after a refusal, ms
   */
  constructor(options) {
    this.url = options.url;
    this.connectionParams = options.connectionParams || (() => ({}));
    this.onState = options.onState || (() => {});
    this.pingInterval = options.pingInterval ?? 5000;
    this.pongTimeout = options.pongTimeout ?? 4000;
    this.ackTimeout = options.ackTimeout ?? 5000;
    this.retryMin = options.retryMin ?? 250;
    this.retryMax = options.retryMax ?? 5000;
    this.refusedRetry = options.refusedRetry ?? 30000;
    this.subs = new Map(); // id -> {query, variables, sink, retries, timer}
    this.nextId = 1;
    this.ws = null;
    this.acked = false;
    this.attempt = 0;
    this.state = null;
    this.timers = {};
    this.stopped = true;
    this.connectedOnce = false;
    this.onOnline = () => this.reconnectNow();
    // The browser knows before any ping does that the network is gone.
    this.onOffline = () => this.dropSocket(4499, "browser offline");
  }

  /** Open the connection (again after `stop()`). */
  start() {
    if (!this.stopped) return;
    this.stopped = false;
    window.addEventListener("online", this.onOnline);
    window.addEventListener("offline", this.onOffline);
    this.setState(this.connectedOnce ? State.STALE : State.CONNECTING, {});
    this.connect();
  }

  /** Close the connection and stop reconnecting; subscriptions are kept. */
  stop() {
    this.stopped = true;
    window.removeEventListener("online", this.onOnline);
    window.removeEventListener("offline", this.onOffline);
    this.clearTimers();
    this.abandonSocket(1000, "stopped");
  }

  /**
   * Subscribe to a live query; returns a handle with `update(variables)` and `close()`.
   *
   * `sink.next(data, errors)` gets every result; `sink.error(errors)` a refusal.
   */
  subscribe(query, variables, sink) {
    const id = String(this.nextId++);
    const sub = { id, query, variables, sink, retries: 0, timer: null };
    this.subs.set(id, sub);
    this.sendSubscribe(sub);
    return {
      update: (newVariables) => this.resubscribe(sub, newVariables),
      close: () => this.unsubscribe(sub),
    };
  }

  /** Reconnect at once, skipping the backoff (the network came back). */
  reconnectNow() {
    if (this.stopped || (this.ws && this.acked)) return;
    clearTimeout(this.timers.retry);
    this.attempt = 0;
    this.abandonSocket(4000, "reconnecting");
    this.connect();
  }

  // -- internals -------------------------------------------------------------

  setState(state, detail) {
    if (state === this.state && state !== State.STALE) return;
    this.state = state;
    this.onState(state, detail);
  }

  connect() {
    if (this.stopped) return;
    let ws;
    try {
      ws = new WebSocket(this.url, PROTOCOL);
    } catch (err) {
      this.scheduleReconnect({ reason: String(err) });
      return;
    }
    this.ws = ws;
    this.acked = false;
    ws.onopen = () => {
      this.send({ type: "connection_init", payload: this.connectionParams() });
      this.timers.ack = setTimeout(() => this.dropSocket(4408, "no connection_ack"), this.ackTimeout);
    };
    ws.onmessage = (event) => this.handleMessage(event.data);
    ws.onclose = (event) => this.handleClose(ws, event.code, event.reason);
    // An error is always followed by close; handleClose decides what to do.
    ws.onerror = () => {};
  }

  handleMessage(raw) {
    let msg;
    try {
      msg = JSON.parse(raw);
    } catch {
      this.dropSocket(4400, "invalid message");
      return;
    }
    switch (msg.type) {
      case "connection_ack":
        clearTimeout(this.timers.ack);
        this.acked = true;
        this.attempt = 0;
        this.connectedOnce = true;
        this.setState(State.LIVE, {});
        this.startKeepAlive();
        for (const sub of this.subs.values()) this.sendSubscribe(sub);
        break;
      case "next": {
        const sub = this.subs.get(msg.id);
        if (sub) {
          sub.retries = 0;
          sub.sink.next(msg.payload?.data ?? null, msg.payload?.errors ?? null);
        }
        break;
      }
      case "error": {
        // The gateway refused or ended this one operation: report it and try
        // again later, with a growing delay so a broken query cannot flood it.
        const sub = this.subs.get(msg.id);
        if (sub) {
          sub.sink.error(Array.isArray(msg.payload) ? msg.payload : [msg.payload]);
          this.retrySubscription(sub);
        }
        break;
      }
      case "complete": {
        // The server ended a live query we still want (e.g. it is shutting down).
        const sub = this.subs.get(msg.id);
        if (sub) this.retrySubscription(sub);
        break;
      }
      case "ping":
        this.send({ type: "pong" });
        break;
      case "pong":
        clearTimeout(this.timers.pong);
        break;
      default:
        break;
    }
  }

  handleClose(ws, code, reason) {
    if (ws !== this.ws) return; // an abandoned socket closing late
    this.ws = null;
    this.acked = false;
    this.clearTimers();
    if (this.stopped) return;
    if (AUTH_CODES.has(code) || FATAL_CODES.has(code)) {
      const state = AUTH_CODES.has(code) ? State.UNAUTHORIZED : State.FAILED;
      this.setState(state, { code, reason });
      // A wall screen never gives up: try again now and then, quietly, in case the
      // refusal was passing (a key server away, a gateway mid-upgrade).
      clearTimeout(this.timers.retry);
      this.timers.retry = setTimeout(() => this.connect(), this.refusedRetry);
      return;
    }
    this.scheduleReconnect({ code, reason });
  }

  scheduleReconnect(detail) {
    const base = Math.min(this.retryMax, this.retryMin * 2 ** this.attempt);
    // Jitter spreads the reconnects of many screens after a gateway restart.
    const delay = base / 2 + Math.random() * (base / 2);
    this.attempt += 1;
    this.setState(this.connectedOnce ? State.STALE : State.CONNECTING, {
      ...detail,
      retryIn: delay,
      attempt: this.attempt,
    });
    clearTimeout(this.timers.retry);
    this.timers.retry = setTimeout(() => this.connect(), delay);
  }

  startKeepAlive() {
    // A dead network does not always close the socket; a missing pong does.
    clearInterval(this.timers.ping);
    this.timers.ping = setInterval(() => {
      if (!this.acked) return;
      this.send({ type: "ping" });
      clearTimeout(this.timers.pong);
      this.timers.pong = setTimeout(() => this.dropSocket(4408, "no pong"), this.pongTimeout);
    }, this.pingInterval);
  }

  /** Give up on the current socket now and go through the reconnect path. */
  dropSocket(code, reason) {
    const ws = this.ws;
    if (!ws) return;
    this.abandonSocket(code, reason);
    this.clearTimers();
    this.scheduleReconnect({ code, reason });
  }

  /** Detach and close the socket without waiting for a closing handshake. */
  abandonSocket(code, reason) {
    const ws = this.ws;
    this.ws = null;
    this.acked = false;
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    try {
      ws.close(code, reason);
    } catch {
      ws.close();
    }
  }

  clearTimers() {
    clearTimeout(this.timers.ack);
    clearTimeout(this.timers.pong);
    clearTimeout(this.timers.retry);
    clearInterval(this.timers.ping);
  }

  send(msg) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
  }

  sendSubscribe(sub) {
    if (!this.acked) return; // sent on connection_ack
    clearTimeout(sub.timer);
    this.send({
      id: sub.id,
      type: "subscribe",
      payload: { query: sub.query, variables: sub.variables },
    });
  }

  retrySubscription(sub) {
    const delay = Math.min(60000, 1000 * 2 ** sub.retries);
    sub.retries += 1;
    clearTimeout(sub.timer);
    sub.timer = setTimeout(() => {
      if (this.subs.get(sub.id) !== sub) return;
      // A fresh id: the old one may still be in use on the server side.
      this.subs.delete(sub.id);
      sub.id = String(this.nextId++);
      this.subs.set(sub.id, sub);
      this.sendSubscribe(sub);
    }, delay);
  }

  resubscribe(sub, variables) {
    if (this.subs.get(sub.id) !== sub) return;
    this.send({ id: sub.id, type: "complete" });
    this.subs.delete(sub.id);
    sub.id = String(this.nextId++);
    sub.variables = variables;
    sub.retries = 0;
    this.subs.set(sub.id, sub);
    this.sendSubscribe(sub);
  }

  unsubscribe(sub) {
    if (this.subs.get(sub.id) !== sub) return;
    clearTimeout(sub.timer);
    this.subs.delete(sub.id);
    this.send({ id: sub.id, type: "complete" });
  }
}
