// The landing page's live figures: /health and one GraphQL query every 2 s.
const root = document.body.dataset.root;
const token = new URLSearchParams(window.location.search).get('token');
const headers = { 'content-type': 'application/json', accept: 'application/json' };
if (token) headers.authorization = `Bearer ${token}`;

const $ = (id) => document.getElementById(id);
const number = (n) => (n === null || n === undefined ? '–' : Number(n).toLocaleString('en-US'));

function show(id, text, state) {
  const el = $(id);
  el.textContent = text;
  el.className = state ?? '';
}

async function graphql(query) {
  const response = await fetch(`${root}/graphql`, {
    method: 'POST', headers, body: JSON.stringify({ query }),
  });
  if (response.status === 401) throw Object.assign(new Error('unauthorized'), { auth: true });
  return response.json();
}

// Optional fields (`gaps`, `eventsMissing`) are asked for only when the schema has them.
let pipelineFields = null;
async function fields() {
  if (pipelineFields) return pipelineFields;
  const reply = await graphql(`{ __type(name: "Pipeline") { fields { name
    type { kind ofType { kind ofType { kind ofType { kind } } } } } } }`);
  // Only fields without a sub-selection (scalars, lists of scalars) can be asked blindly.
  const leaf = (type) => (type.ofType ? leaf(type.ofType) : type.kind);
  const names = new Set((reply.data?.__type?.fields ?? [])
    .filter((f) => ['SCALAR', 'ENUM'].includes(leaf(f.type))).map((f) => f.name));
  const wanted = ['lastSequence', 'streamLastSequence', 'lag', 'eventsApplied',
    'eventsRejected', 'lastEventTime', 'gaps', 'eventsMissing'];
  pipelineFields = wanted.filter((name) => names.has(name));
  return pipelineFields;
}

function age(iso) {
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (seconds < 90) return `${Math.round(seconds)} s ago`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} days ago`;
}

async function health() {
  try {
    const body = await (await fetch(`${root}/health`)).json();
    const checks = body.checks ?? {};
    show('nats-state', checks.nats ? 'connected' : `not connected: ${body.reason ?? ''}`,
      checks.nats ? 'ok' : 'bad');
    show('materializer-state',
      checks.materializer ? `answering (data version ${number(body.version)})`
        : `not answering: ${body.reason ?? ''}`,
      checks.materializer ? 'ok' : 'bad');
  } catch (error) {
    show('gateway-state', `not reachable: ${error.message}`, 'bad');
  }
}

function rejects(rows) {
  const table = $('rejects-table');
  const body = table.querySelector('tbody');
  body.replaceChildren(...rows.map((row) => {
    const tr = document.createElement('tr');
    const cells = [number(row.sequence), new Date(row.receivedAt).toISOString().replace('T', ' ').slice(0, 19),
      row.eventType ?? '(unknown)', row.reason];
    cells.forEach((text, i) => {
      const td = document.createElement('td');
      td.textContent = text;
      if (i === 3) td.className = 'reason';
      tr.append(td);
    });
    return tr;
  }));
  table.hidden = rows.length === 0;
  $('rejects-empty').hidden = rows.length !== 0;
}

async function pipeline() {
  try {
    const selection = (await fields()).join(' ');
    const reply = await graphql(`{ pipeline { ${selection} }
      rejectedEvents(limit: 10) { sequence subject eventType reason receivedAt } }`);
    const p = reply.data?.pipeline;
    if (!p) throw new Error(reply.errors?.[0]?.message ?? 'no data');
    show('last-event', p.lastEventTime ? `${age(p.lastEventTime)} (${p.lastEventTime})` : 'none yet');
    show('lag', `${number(p.lag)} events`, p.lag > 1000 ? 'bad' : '');
    show('applied', number(p.eventsApplied));
    show('rejected', number(p.eventsRejected), p.eventsRejected > 0 ? 'bad' : '');
    show('sequence', `${number(p.lastSequence)} of ${number(p.streamLastSequence)}`);
    if ('gaps' in p || 'eventsMissing' in p) {
      document.querySelectorAll('.gaps').forEach((el) => { el.hidden = false; });
      const missing = p.eventsMissing ?? 0;
      const gaps = Array.isArray(p.gaps) ? p.gaps.length : (p.gaps ?? 0);
      show('gaps', `${number(gaps)} (${number(missing)} events missing)`, missing ? 'bad' : '');
    }
    rejects(reply.data?.rejectedEvents ?? []);
    $('updated').textContent = new Date().toLocaleTimeString('en-GB');
  } catch (error) {
    if (error.auth) $('auth-note').hidden = false;
    $('updated').textContent = `failed at ${new Date().toLocaleTimeString('en-GB')}: ${error.message}`;
  }
}

// The alert badge: firing rules by name (docs/ALERTS.md); "–" on a gateway without alerts.
async function alerts() {
  try {
    const reply = await graphql(`{ alerts { rule state } }`);
    const rules = reply.data?.alerts;
    if (!rules) { show('alerts-state', '–'); return; }
    const firing = rules.filter((a) => a.state === 'firing').map((a) => a.rule);
    if (!rules.length) show('alerts-state', 'no rules configured');
    else if (!firing.length) show('alerts-state', `${rules.length} rules, none firing`, 'ok');
    else show('alerts-state', `${firing.length} firing: ${firing.join(', ')}`, 'bad');
  } catch (error) {
    show('alerts-state', '–');
  }
}

async function tick() {
  await Promise.all([health(), pipeline(), alerts()]);
  setTimeout(tick, 2000);
}
tick();
