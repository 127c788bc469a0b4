// Orders-per-hour bar chart drawn as inline SVG in CSS pixels, so its text stays
// the size the stylesheet asks for whatever the screen.

const SVG = "http://www.w3.org/2000/svg";

function el(name, attrs, text) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** A rounded-up axis maximum with 1, 2 or 5 as its leading digit. */
export function niceMax(value) {
  if (value <= 0) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) {
    if (step * magnitude >= value) return step * magnitude;
  }
  return 10 * magnitude;
}

/**
 * Draw `buckets` ([{hour: Date, orders: number}], oldest first) into `svg`.
 *
 * `fmt` supplies `hour(date)` and `integer(n)`; the last bucket is the current hour.
 */
export function drawHourlyBars(svg, buckets, fmt) {
  const width = Math.max(1, svg.clientWidth);
  const height = Math.max(1, svg.clientHeight);
  const font = parseFloat(getComputedStyle(svg).fontSize) || 16;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.replaceChildren();

  const max = niceMax(Math.max(0, ...buckets.map((b) => b.orders)));
  // Orders are whole numbers: no gridline at 2.5.
  const ticks = Number.isInteger(max / 2) ? [0, max / 2, max] : [0, max];
  // The left margin fits the widest tick label ("10,000" and wider), measured as drawn.
  const probe = el("text", { class: "axis" }, fmt.integer(max));
  svg.append(probe);
  const labelWidth = probe.getComputedTextLength() || font * 0.6 * fmt.integer(max).length;
  probe.remove();
  const left = Math.max(font * 3.2, labelWidth + font * 0.8);
  const right = font * 0.5;
  const top = font * 1.4;
  const bottom = font * 1.8;
  const plotW = Math.max(1, width - left - right);
  const plotH = Math.max(1, height - top - bottom);
  const slot = plotW / Math.max(1, buckets.length);
  const gap = Math.min(slot * 0.2, font * 0.4);
  const y = (v) => top + plotH - (v / max) * plotH;

  for (const tick of ticks) {
    svg.append(
      el("line", { class: "grid", x1: left, x2: width - right, y1: y(tick), y2: y(tick) }),
      el(
        "text",
        { class: "axis", x: left - font * 0.4, y: y(tick), "text-anchor": "end", dy: "0.35em" },
        fmt.integer(tick),
      ),
    );
  }

  // Label every n-th hour so labels never overlap, whatever the width.
  const labelEvery = [1, 2, 3, 4, 6, 12].find((n) => slot * n >= font * 2.6) ?? 24;
  buckets.forEach((bucket, i) => {
    const x = left + i * slot + gap / 2;
    const barH = Math.max(0, top + plotH - y(bucket.orders));
    const current = i === buckets.length - 1;
    const bar = el("rect", {
      class: current ? "bar current" : "bar",
      x,
      y: top + plotH - barH,
      width: Math.max(1, slot - gap),
      height: barH,
      rx: Math.min(4, (slot - gap) / 4),
      "data-hour": bucket.hour.toISOString(),
      "data-orders": bucket.orders,
    });
    bar.append(el("title", {}, `${fmt.hour(bucket.hour)}:00 — ${fmt.integer(bucket.orders)}`));
    svg.append(bar);
    if ((buckets.length - 1 - i) % labelEvery === 0) {
      svg.append(
        el(
          "text",
          { class: "axis", x: x + (slot - gap) / 2, y: height - font * 0.4, "text-anchor": "middle" },
          fmt.hour(bucket.hour),
        ),
      );
    }
  });
  const last = buckets.at(-1);
  if (last && last.orders > 0) {
    svg.append(
      el(
        "text",
        {
          class: "value",
          x: left + (buckets.length - 1) * slot + slot / 2,
          y: Math.max(font, y(last.orders) - font * 0.35),
          "text-anchor": "middle",
        },
        fmt.integer(last.orders),
      ),
    );
  }
}
