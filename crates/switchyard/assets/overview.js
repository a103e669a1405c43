// Overview: recent events arrive live and are prepended to the list.
import { liveEvents, escapeHtml } from '/assets/app.js';

const list = document.getElementById('events');
const empty = document.getElementById('events-empty');
const status = document.getElementById('live-status');
const HIDDEN = new Set(['id', 'type', 'created_at', 'endpoint_id', 'api_key', 'has_api_key', 'job_id', 'user_id']);

function title(type) {
  const text = type.replaceAll('_', ' ').toLowerCase();
  return text.charAt(0).toUpperCase() + text.slice(1);
}

function detail(data) {
  return Object.entries(data)
    .filter(([key, value]) => !HIDDEN.has(key) && ['string', 'number', 'boolean'].includes(typeof value))
    .slice(0, 4)
    .map(([key, value]) => `${key.replaceAll('_', ' ')}: ${value}`)
    .join(' · ');
}

liveEvents((type, data) => {
  const item = document.createElement('li');
  item.className = `event event-${type}`;
  const endpoint = data.endpoint_id
    ? `<a href="/endpoints/${encodeURIComponent(data.endpoint_id)}">${escapeHtml(data.endpoint_name || data.endpoint_id)}</a>`
    : '<span></span>';
  item.innerHTML = `<span class="event-title">${escapeHtml(title(type))}</span>${endpoint}`
    + `<span class="event-detail muted">${escapeHtml(detail(data))}</span>`
    + `<time class="muted" datetime="${escapeHtml(data.created_at || '')}">just now</time>`;
  if (data.id && list.querySelector(`[data-event-id="${CSS.escape(data.id)}"]`)) return;
  if (data.id) item.dataset.eventId = data.id;
  list.prepend(item);
  while (list.children.length > 20) list.lastElementChild.remove();
  empty.hidden = true;
}, status, list.dataset.since && list.dataset.since !== "0" ? `?since=${list.dataset.since}` : "");
