// Endpoints table: filters without reloading, live refresh on events, row actions.
import { api, toast, confirmDialog, busy, liveEvents } from '/assets/app.js';

const form = document.getElementById('filters');
const rows = document.getElementById('endpoint-rows');
const codeDialog = document.getElementById('code-dialog');
const codeBody = document.getElementById('code-body');

function currentQuery() {
  const params = new URLSearchParams(new FormData(form));
  for (const [key, value] of [...params]) if (!value) params.delete(key);
  return params;
}

let refreshing = null;
async function refresh() {
  const params = currentQuery();
  history.replaceState(null, '', params.toString() ? `/endpoints?${params}` : '/endpoints');
  params.set('fragment', 'rows');
  const controller = new AbortController();
  if (refreshing) refreshing.abort();
  refreshing = controller;
  try {
    const response = await fetch(`/endpoints?${params}`, { credentials: 'same-origin', signal: controller.signal });
    if (response.redirected || response.status === 401) { location.assign('/login?next=/endpoints'); return; }
    if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
    rows.innerHTML = await response.text();
    rows.setAttribute('data-refreshed', String(Date.now()));
  } catch (error) {
    if (error.name !== 'AbortError') toast(`Could not refresh the table: ${error.message}`, 'error');
  }
}

let timer = null;
function refreshSoon(delay = 250) {
  clearTimeout(timer);
  timer = setTimeout(refresh, delay);
}

form.addEventListener('submit', (event) => { event.preventDefault(); refresh(); });
form.addEventListener('change', () => refreshSoon(0));
form.querySelector('#q').addEventListener('input', () => refreshSoon(250));

rows.addEventListener('click', async (event) => {
  const code = event.target.closest('[data-code]');
  if (code) {
    await busy(code, async () => {
      try {
        const response = await fetch(`/endpoints/${encodeURIComponent(code.dataset.code)}/code`, { credentials: 'same-origin' });
        if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
        codeBody.innerHTML = await response.text();
        codeDialog.showModal();
      } catch (error) {
        toast(`Could not load code samples: ${error.message}`, 'error');
      }
    });
    return;
  }
  const terminate = event.target.closest('[data-terminate]');
  if (terminate) {
    const name = terminate.dataset.name;
    const sure = await confirmDialog(
      `Terminate ${name}?`,
      'Its API keys stop working at once and its provider resources are deleted. This cannot be undone.',
      'Terminate',
    );
    if (!sure) return;
    await busy(terminate, async () => {
      try {
        await api('DELETE', `/api/v1/endpoints/${encodeURIComponent(terminate.dataset.terminate)}`);
        toast(`${name} terminated`, 'success');
        await refresh();
      } catch (error) {
        toast(`Could not terminate ${name}: ${error.message}`, 'error');
      }
    });
  }
});

document.getElementById('code-close').addEventListener('click', () => codeDialog.close());

liveEvents((type) => {
  if (type.startsWith('DEPLOYMENT_') || type.startsWith('ENDPOINT_')) refreshSoon(300);
}, null);
