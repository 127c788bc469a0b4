// What a kiosk screen shows: its URL parameters, its live queries and their time windows.

import { dayBounds, hourStart, isoWithOffset, localDate } from "./format.js";

/** Panel names, in their default order on screen. */
export const PANELS = ["revenue", "aov", "fresh", "orders", "stock", "ar"];
export const HOUR = 3600 * 1000;

/** The live queries the panels subscribe to (docs/API.md "GraphQL"). */
export const QUERIES = {
  summary: `subscription KioskSalesToday($from: DateTime, $to: DateTime, $channel: String) {
  salesSummary(from: $from, to: $to, channel: $channel) {
    orders cancelledOrders netRevenue averageOrderValue
  }
}`,
  hourly: `subscription KioskOrdersPerHour($from: DateTime, $to: DateTime, $channel: String) {
  salesByHour(from: $from, to: $to, channel: $channel) { hour orders netRevenue }
}`,
  lowStock: `subscription KioskLowStock($warehouse: String) {
  lowStock(warehouse: $warehouse) { sku name warehouse onHand reorderPoint }
}`,
  aging: `subscription KioskReceivables($asOf: Date) {
  arAging(asOf: $asOf) {
    totalOutstanding openInvoices
    buckets { current days1To30 days31To60 days61To90 over90 total }
  }
}`,
  pipeline: `subscription KioskPipeline {
  pipeline { lastSequence lag lastEventTime lastBatchAt }
}`,
};

/**
 * The named query behind each panel and its export parameters (docs/EXPORTS.md), from the
 * panel's current windows `w` and the screen's configuration: one entry per panel.
 */
export const EXPORTS = {
  revenue: { query: "sales_summary", params: (w) => w.summary },
  aov: { query: "sales_summary", params: (w) => w.summary },
  fresh: { query: "pipeline", params: () => ({}) },
  orders: { query: "sales_by_hour", params: (w) => w.hourly },
  stock: { query: "low_stock", params: (w, config) => ({ warehouse: config.warehouse }) },
  ar: { query: "ar_aging", params: (w) => ({ as_of: w.aging.asOf }) },
};

/** The formats a panel links to, in link order. */
export const EXPORT_FORMATS = ["csv", "xlsx"];

/** The URL of a panel's export: `<exportPath>/<query>.<format>?<params>`, nulls left out. */
export function exportUrl(exportPath, panel, format, w, config) {
  const spec = EXPORTS[panel];
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(spec.params(w, config))) {
    if (value != null && value !== "") params.set(key, value);
  }
  const query = params.toString();
  return `${exportPath}/${spec.query}.${format}${query ? `?${query}` : ""}`;
}

/** The screen's configuration, from its URL. */
export function readConfig(search) {
  const params = new URLSearchParams(search);
  const list = (params.get("panels") || "")
    .split(",")
    .map((p) => p.trim().toLowerCase())
    .filter((p) => PANELS.includes(p));
  return {
    warehouse: params.get("warehouse") || null,
    channel: params.get("channel") || null,
    panels: list.length ? [...new Set(list)] : PANELS,
    theme: ["dark", "light", "auto"].includes(params.get("theme")) ? params.get("theme") : "dark",
    token: params.get("token") || null,
    currency: (params.get("currency") || "").toUpperCase() || null,
    locale: params.get("locale") || null,
    title: params.get("title") || null,
  };
}

/** The query variables for the time windows that contain `now`. */
export function windows(now, channel) {
  const day = dayBounds(now);
  const hour = hourStart(now);
  return {
    summary: { from: isoWithOffset(day.start), to: isoWithOffset(day.end), channel },
    hourly: {
      from: new Date(hour.getTime() - 23 * HOUR).toISOString(),
      to: new Date(hour.getTime() + HOUR).toISOString(),
      channel,
    },
    aging: { asOf: localDate(now) },
  };
}
