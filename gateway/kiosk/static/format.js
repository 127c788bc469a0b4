// Number, money and time formatting for the kiosk, in the screen's locale.

/** Formatters bound to one locale and optional ISO currency code. */
export function makeFormatters(locale, currency) {
  let loc;
  try {
    // A mistyped locale in the URL falls back to the browser's own.
    loc = locale ? Intl.NumberFormat.supportedLocalesOf(locale)[0] : undefined;
  } catch {
    loc = undefined;
  }
  let money;
  try {
    money = currency
      ? new Intl.NumberFormat(loc, { style: "currency", currency, minimumFractionDigits: 2 })
      : new Intl.NumberFormat(loc, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  } catch {
    // An unknown currency code must not blank the whole screen.
    money = new Intl.NumberFormat(loc, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  }
  const integer = new Intl.NumberFormat(loc, { maximumFractionDigits: 0 });
  const hour = new Intl.DateTimeFormat(loc, { hour: "2-digit", hourCycle: "h23" });
  const clock = new Intl.DateTimeFormat(loc, {
    hour: "2-digit",
    minute: "2-digit",
    hourCycle: "h23",
  });
  const clockSeconds = new Intl.DateTimeFormat(loc, {
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    hourCycle: "h23",
  });
  return {
    money: (value) => (value == null ? "–" : money.format(Number(value))),
    integer: (value) => (value == null ? "–" : integer.format(Number(value))),
    hour: (date) => hour.format(date),
    clock: (date) => clock.format(date),
    clockSeconds: (date) => clockSeconds.format(date),
  };
}

/** "just now", "42 s ago", "5 min ago", "3 h ago", "2 d ago". */
export function ago(date, now) {
  const seconds = Math.max(0, Math.round((now - date) / 1000));
  if (seconds < 2) return "just now";
  if (seconds < 60) return `${seconds} s ago`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours} h ago`;
  return `${Math.floor(hours / 24)} d ago`;
}

/** Local midnight of `now` and of the next day, as Dates. */
export function dayBounds(now) {
  const start = new Date(now.getFullYear(), now.getMonth(), now.getDate());
  const end = new Date(now.getFullYear(), now.getMonth(), now.getDate() + 1);
  return { start, end };
}

/** Start of the current UTC hour (sales are bucketed by UTC hour). */
export function hourStart(now) {
  const d = new Date(now.getTime());
  d.setUTCMinutes(0, 0, 0);
  return d;
}

/** The local calendar date of `now` as YYYY-MM-DD. */
export function localDate(now) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${now.getFullYear()}-${pad(now.getMonth() + 1)}-${pad(now.getDate())}`;
}

/** ISO-8601 with the local offset, e.g. 2026-11-25T00:00:00+01:00. */
export function isoWithOffset(date) {
  const pad = (n) => String(Math.floor(Math.abs(n))).padStart(2, "0");
  const offset = -date.getTimezoneOffset();
  const sign = offset >= 0 ? "+" : "-";
  return (
    `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}` +
    `T${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}` +
    `${sign}${pad(offset / 60)}:${pad(offset % 60)}`
  );
}
