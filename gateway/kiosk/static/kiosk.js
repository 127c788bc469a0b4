// Pulse BI kiosk: live KPIs for a wall screen. Every number comes from a GraphQL
// live query over one WebSocket; nothing is polled. The URL configures the screen.

import { drawHourlyBars } from "./chart.js";
import { EXPORT_FORMATS, HOUR, QUERIES, exportUrl, readConfig, windows } from "./config.js";
import { ago, makeFormatters } from "./format.js";
import { LiveClient, State } from "./gqlws.js";

const TOKEN_KEY = "pulse-bi-kiosk-token";
const LAG_WARNING = 1000;
const ALERTS_QUERY = `subscription KioskAlerts { alerts { rule state } }`;

const byId = (id) => document.getElementById(id);

class Kiosk {
  constructor(config) {
    this.config = config;
    this.fmt = makeFormatters(config.locale, config.currency);
    this.subs = {};
    this.hourly = null;
    this.pipeline = null;
    this.staleSince = null;
    this.messages = 0;
  }

  start() {
    this.applyLayout();
    this.applyTheme();
    const path = document.body.dataset.graphqlPath || "/graphql";
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    this.client = new LiveClient({
      url: `${scheme}//${location.host}${path}`,
      connectionParams: () => this.connectionParams(),
      onState: (state, detail) => this.showState(state, detail),
    });
    this.subscribeAll();
    this.renderExports();
    this.client.start();
    this.tick();
    setInterval(() => this.tick(), 1000);
    const chart = byId("orders-chart");
    new ResizeObserver(() => this.drawChart()).observe(chart);
    new ResizeObserver(() => this.fitStockRows()).observe(byId("stock-list"));
    new ResizeObserver(() => document.querySelectorAll(".big, .amount").forEach(fitWidth)).observe(
      byId("panels"),
    );
    byId("auth-form").addEventListener("submit", (event) => this.submitToken(event));
  }

  token() {
    return this.config.token || sessionStorage.getItem(TOKEN_KEY);
  }

  connectionParams() {
    const token = this.token();
    // Sent both ways because servers differ in where they look for it.
    return token ? { token, Authorization: `Bearer ${token}` } : {};
  }

  applyLayout() {
    const { panels, warehouse, channel, title } = this.config;
    for (const node of document.querySelectorAll("[data-panel]")) {
      const index = panels.indexOf(node.dataset.panel);
      node.hidden = index < 0;
      node.style.order = String(index);
    }
    if (title) {
      byId("title").textContent = title;
      document.title = `${title} · Pulse BI`;
    }
    const scope = [];
    if (warehouse) scope.push(`Warehouse ${warehouse}`);
    if (channel) scope.push(`Channel ${channel}`);
    byId("scope").textContent = scope.join(" · ");
  }

  applyTheme() {
    const root = document.documentElement;
    if (this.config.theme !== "auto") {
      root.dataset.theme = this.config.theme;
      return;
    }
    const query = matchMedia("(prefers-color-scheme: light)");
    const apply = () => {
      root.dataset.theme = query.matches ? "light" : "dark";
    };
    apply();
    query.addEventListener("change", apply);
  }

  has(panel) {
    return this.config.panels.includes(panel);
  }

  subscribeAll() {
    const w = windows(new Date(), this.config.channel);
    this.windows = w;
    const add = (name, variables, panels, render) => {
      this.subs[name] = this.client.subscribe(QUERIES[name], variables, {
        next: (data, errors) => this.receive(panels, data, errors, render),
        error: (errors) => this.receive(panels, null, errors, render),
      });
    };
    if (this.has("revenue") || this.has("aov")) {
      add("summary", w.summary, ["revenue", "aov"], (d) => this.renderSummary(d.salesSummary));
    }
    if (this.has("orders")) {
      add("hourly", w.hourly, ["orders"], (d) => this.renderHourly(d.salesByHour));
    }
    if (this.has("stock")) {
      const vars = { warehouse: this.config.warehouse };
      add("lowStock", vars, ["stock"], (d) => this.renderLowStock(d.lowStock));
    }
    if (this.has("ar")) {
      add("aging", w.aging, ["ar"], (d) => this.renderAging(d.arAging));
    }
    if (this.has("fresh")) {
      add("pipeline", {}, ["fresh"], (d) => this.renderPipeline(d.pipeline));
    }
    // The alert badge, on every screen; a gateway without alerts answers an error: hidden.
    this.subs.alerts = this.client.subscribe(ALERTS_QUERY, {}, {
      next: (data) => this.renderAlerts(data && data.alerts),
      error: () => this.renderAlerts(null),
    });
  }

  /** Each panel's download links, for the query behind it with its current windows. */
  renderExports() {
    const path = document.body.dataset.exportPath || "/export";
    for (const panel of document.querySelectorAll("[data-panel]")) {
      let box = panel.querySelector(".exports");
      if (!box) {
        box = document.createElement("nav");
        box.className = "exports";
        box.setAttribute("aria-label", "Download");
        for (const format of EXPORT_FORMATS) {
          const link = document.createElement("a");
          link.dataset.format = format;
          link.textContent = format.toUpperCase();
          link.title = `Download as ${format.toUpperCase()}`;
          link.addEventListener("click", (event) => this.download(event, link));
          box.append(link);
        }
        panel.append(box);
      }
      for (const link of box.querySelectorAll("a")) {
        const { format } = link.dataset;
        link.href = exportUrl(path, panel.dataset.panel, format, this.windows, this.config);
      }
    }
  }

  /**
   * With a token, a plain link cannot send it (docs/EXPORTS.md): fetch the file with the
   * header and save it under the name the gateway gives.
   */
  async download(event, link) {
    const token = this.token();
    if (!token) return;
    event.preventDefault();
    const box = link.closest("[data-panel]").querySelector(".error");
    try {
      const reply = await fetch(link.href, { headers: { Authorization: `Bearer ${token}` } });
      if (!reply.ok) throw new Error(`export refused (${reply.status})`);
      const disposition = reply.headers.get("content-disposition") || "";
      const name = /filename="([^"]+)"/.exec(disposition)?.[1] || "export";
      const url = URL.createObjectURL(await reply.blob());
      const save = document.createElement("a");
      save.href = url;
      save.download = name;
      save.click();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
    } catch (error) {
      box.hidden = false;
      box.textContent = `Download failed: ${error.message}`;
    }
  }

  renderAlerts(alerts) {
    const badge = byId("alerts");
    const firing = (alerts || []).filter((a) => a.state === "firing").map((a) => a.rule);
    badge.hidden = firing.length === 0;
    badge.textContent = firing.length ? `⚠ ${firing.length} alert${firing.length > 1 ? "s" : ""}` : "";
    badge.title = firing.join(", ");
  }

  receive(panels, data, errors, render) {
    this.messages += 1;
    document.body.dataset.messages = String(this.messages);
    const message = errors && errors.length ? errors[0].message || "error" : null;
    for (const name of panels) {
      const panel = document.querySelector(`[data-panel="${name}"]`);
      const box = panel.querySelector(".error");
      box.hidden = !message;
      box.textContent = message || "";
      // A panel whose query failed keeps its last numbers but shows they are old.
      if (message) panel.dataset.stale = "";
      else delete panel.dataset.stale;
    }
    // A failed field comes back null: keep the last numbers rather than draw nothing.
    if (data && Object.values(data).every((value) => value != null)) render(data);
    this.showHealth();
  }

  /** Connected but some panels get errors (e.g. the materializer is down): say so. */
  showHealth() {
    const failing = document.querySelectorAll("[data-panel]:not([hidden])[data-stale]").length;
    document.body.toggleAttribute("data-degraded", failing > 0);
    if (this.client.state === State.LIVE) {
      byId("status-text").textContent = failing > 0 ? "Live · data unavailable" : "Live";
    }
  }

  // -- rendering -------------------------------------------------------------

  setText(id, text, value) {
    const node = byId(id);
    if (node.textContent !== text) {
      const first = node.textContent === "–";
      node.textContent = text;
      if (!first) flash(node);
    }
    if (value !== undefined) node.dataset.value = String(value);
    if (node.classList.contains("big") || node.classList.contains("amount")) fitWidth(node);
  }

  renderSummary(s) {
    this.setText("revenue-net", this.fmt.money(s.netRevenue), s.netRevenue);
    this.setText("revenue-orders", this.fmt.integer(s.orders), s.orders);
    this.setText("revenue-cancelled", this.fmt.integer(s.cancelledOrders), s.cancelledOrders);
    this.setText("aov", this.fmt.money(s.averageOrderValue), s.averageOrderValue);
  }

  renderHourly(rows) {
    const byHour = new Map(rows.map((r) => [new Date(r.hour).getTime(), r]));
    const first = new Date(this.windows.hourly.from).getTime();
    const buckets = [];
    // The API returns only hours with data; the chart shows all 24.
    for (let i = 0; i < 24; i += 1) {
      const t = first + i * HOUR;
      buckets.push({ hour: new Date(t), orders: byHour.get(t)?.orders ?? 0 });
    }
    this.hourly = buckets;
    const chart = byId("orders-chart");
    chart.dataset.total = String(buckets.reduce((sum, b) => sum + b.orders, 0));
    chart.dataset.current = String(buckets.at(-1).orders);
    this.drawChart();
  }

  drawChart() {
    if (this.hourly) drawHourlyBars(byId("orders-chart"), this.hourly, this.fmt);
  }

  renderLowStock(rows) {
    this.setText("stock-count", this.fmt.integer(rows.length), rows.length);
    this.stockRows = rows;
    this.fitStockRows();
  }

  fitStockRows() {
    const rows = this.stockRows;
    if (!rows) return;
    const list = byId("stock-list");
    const items = rows.slice(0, 50).map((r) => {
      const li = document.createElement("li");
      li.dataset.sku = r.sku;
      const name = document.createElement("span");
      name.className = "name";
      const where = this.config.warehouse ? "" : ` · ${r.warehouse}`;
      name.textContent = `${r.name || r.sku}${where}`;
      const qty = document.createElement("span");
      qty.className = "qty";
      qty.textContent = this.fmt.integer(r.onHand);
      const rp = document.createElement("small");
      rp.textContent = ` / ${this.fmt.integer(r.reorderPoint)}`;
      qty.append(rp);
      li.append(name, qty);
      return li;
    });
    list.replaceChildren(...items);
    // Show as many rows as fit and say how many more there are: no scrolling.
    const more = document.createElement("li");
    more.className = "more";
    const shown = () => list.querySelectorAll("li:not(.more)");
    const count = () => {
      const hiddenRows = rows.length - shown().length;
      if (hiddenRows <= 0) return;
      more.textContent = `+ ${this.fmt.integer(hiddenRows)} more`;
      if (!more.isConnected) list.append(more);
    };
    count();
    while (shown().length > 0 && list.scrollHeight > list.clientHeight + 1) {
      shown()[shown().length - 1].remove();
      count();
    }
  }

  renderAging(a) {
    const b = a.buckets;
    this.setText("ar-total", this.fmt.money(a.totalOutstanding), a.totalOutstanding);
    this.setText("ar-open", this.fmt.integer(a.openInvoices), a.openInvoices);
    const overdue = b.days1To30 + b.days31To60 + b.days61To90 + b.over90;
    this.setText("ar-overdue", this.fmt.money(overdue), Math.round(overdue * 100) / 100);
    const total = b.total || a.totalOutstanding || 0;
    for (const key of ["current", "days1To30", "days31To60", "days61To90", "over90"]) {
      this.setText(`ar-${key}`, this.fmt.money(b[key]), b[key]);
      const fill = document.querySelector(`[data-bucket="${key}"] .fill`);
      fill.style.width = total > 0 ? `${(100 * b[key]) / total}%` : "0%";
    }
  }

  renderPipeline(p) {
    this.pipeline = p;
    this.setText("fresh-lag", this.fmt.integer(p.lag), p.lag);
    byId("fresh-lag").classList.toggle("warn", p.lag > LAG_WARNING);
    const time = p.lastEventTime ? new Date(p.lastEventTime) : null;
    this.setText("fresh-time", time ? this.fmt.clockSeconds(time) : "no events yet");
    byId("fresh-age").dataset.value = p.lastEventTime || "";
    this.renderAge();
  }

  renderAge() {
    const p = this.pipeline;
    if (!p) return;
    const node = byId("fresh-age");
    // Only the wording changes each second, so it must not flash.
    node.textContent = p.lastEventTime ? ago(new Date(p.lastEventTime), new Date()) : "–";
  }

  tick() {
    const now = new Date();
    byId("clock").textContent = this.fmt.clock(now);
    this.renderAge();
    if (this.staleSince) this.showStale();
    // Move the time windows when the hour or the day turns (not a data poll: the
    // live queries are re-issued only when their variables change).
    const w = windows(now, this.config.channel);
    for (const name of ["summary", "hourly", "aging"]) {
      if (this.subs[name] && JSON.stringify(w[name]) !== JSON.stringify(this.windows[name])) {
        this.subs[name].update(w[name]);
      }
    }
    const moved = JSON.stringify(w) !== JSON.stringify(this.windows);
    this.windows = w;
    if (moved) this.renderExports();
  }

  // -- connection state ------------------------------------------------------

  showState(state, detail) {
    document.body.dataset.connection = state;
    const text = byId("status-text");
    if (state === State.LIVE) {
      this.staleSince = null;
      byId("auth").hidden = true;
      this.showHealth();
    } else if (state === State.STALE) {
      this.staleSince ??= new Date();
      this.showStale();
    } else if (state === State.UNAUTHORIZED) {
      text.textContent = "Token needed";
      this.askToken(detail);
    } else if (state === State.FAILED) {
      text.textContent = `Refused by gateway (${detail.code})`;
    } else {
      text.textContent = "Connecting…";
    }
  }

  showStale() {
    const since = this.fmt.clockSeconds(this.staleSince);
    byId("status-text").textContent = `Stale since ${since} · reconnecting`;
  }

  askToken(detail) {
    const had = Boolean(this.token());
    byId("auth-message").textContent = had
      ? `The gateway refused the token (${detail.code}). Enter a valid one.`
      : "The gateway asks for a token. Paste it here, or add ?token=… to this page's URL.";
    byId("auth").hidden = false;
    byId("auth-token").focus();
  }

  submitToken(event) {
    event.preventDefault();
    const value = byId("auth-token").value.trim();
    if (!value) return;
    this.config.token = value;
    sessionStorage.setItem(TOKEN_KEY, value);
    byId("auth").hidden = true;
    this.client.stop();
    this.client.start();
  }
}

/** Shrink a figure's type until it fits its box: large sums must not be cut off. */
function fitWidth(node) {
  node.style.fontSize = "";
  if (!node.clientWidth) return;
  const overflow = node.scrollWidth / node.clientWidth;
  if (overflow > 1) {
    const size = parseFloat(getComputedStyle(node).fontSize);
    node.style.fontSize = `${Math.floor((size / overflow) * 0.98)}px`;
  }
}

function flash(node) {
  node.classList.remove("changed");
  // Reading layout restarts the CSS animation on the same element.
  void node.offsetWidth;
  node.classList.add("changed");
}

const kiosk = new Kiosk(readConfig(location.search));
window.pulseKiosk = kiosk;
kiosk.start();
