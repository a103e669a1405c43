// Endpoint page: create and revoke keys, save settings, terminate, and keep
// the health tab's events live. The page itself is rendered by the server;
// lists are re-fetched as server-rendered fragments after each change.
import { api, toast, confirmDialog, busy, liveEvents } from '/assets/app.js';

const panel = document.getElementById('tab-panel');
const endpointId = panel.dataset.endpointId;
const endpointName = panel.dataset.endpointName;
const pagePath = `/endpoints/${encodeURIComponent(endpointId)}`;
const apiPath = `/api/v1/endpoints/${encodeURIComponent(endpointId)}`;

/** Fetches a server-rendered fragment of this page. */
async function fragment(name) {
  const response = await fetch(`${pagePath}?fragment=${name}`, { credentials: 'same-origin' });
  if (response.redirected || response.status === 401) {
    location.assign(`/login?next=${encodeURIComponent(location.pathname + location.search)}`);
    throw new Error('Your session ended; sign in again');
  }
  if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
  return response.text();
}

/** Shows a server error in a form and marks the field it names (`field: message`). */
function showFormError(form, box, error) {
  for (const input of form.querySelectorAll('[aria-invalid="true"]')) input.removeAttribute('aria-invalid');
  box.textContent = error.message;
  box.hidden = false;
  const match = /^([a-z_]+)(?:\.[a-z_]+)*: /.exec(error.message);
  const input = match && form.querySelector(`[name="${match[1]}"]`);
  if (input) {
    input.setAttribute('aria-invalid', 'true');
    input.setAttribute('aria-errormessage', box.id);
    input.focus();
  }
}

function clearFormError(form, box) {
  box.hidden = true;
  box.textContent = '';
  for (const input of form.querySelectorAll('[aria-invalid="true"]')) input.removeAttribute('aria-invalid');
}

/** A whole number from an input, or undefined when it is empty (the server's default). */
function numberOf(input) {
  const text = input.value.trim();
  if (text === '') return undefined;
  const value = Number(text);
  return Number.isFinite(value) ? value : text;
}

// API keys.
const keyForm = document.getElementById('key-form');
const keyRows = document.getElementById('key-rows');
if (keyRows) {
  const keyError = document.getElementById('key-error');
  const newKey = document.getElementById('new-key');
  const newKeyValue = document.getElementById('new-key-value');
  const newKeyCopy = document.getElementById('new-key-copy');

  const refreshKeys = async () => {
    try {
      keyRows.innerHTML = await fragment('keys');
      keyRows.dataset.refreshed = String(Date.now());
    } catch (error) {
      toast(`Could not refresh the keys: ${error.message}`, 'error');
    }
  };

  if (keyForm) {
    keyForm.addEventListener('submit', async (event) => {
      event.preventDefault();
      clearFormError(keyForm, keyError);
      const button = keyForm.querySelector('button[type="submit"]');
      await busy(button, async () => {
        try {
          const created = await api('POST', `${apiPath}/keys`, {
            name: keyForm.elements.name.value,
            rate_limit_per_minute: numberOf(keyForm.elements.rate_limit_per_minute),
            rate_limit_per_day: numberOf(keyForm.elements.rate_limit_per_day),
          });
          document.getElementById('new-key-name').textContent = created.key.name;
          newKeyValue.textContent = created.api_key;
          newKeyCopy.dataset.copy = created.api_key;
          newKey.hidden = false;
          newKey.focus();
          keyForm.elements.name.value = '';
          toast(`Key ${created.key.name} created. Copy it now: it is shown only once.`, 'success');
          await refreshKeys();
        } catch (error) {
          showFormError(keyForm, keyError, error);
          toast(`Could not create the key: ${error.message}`, 'error');
        }
      });
    });
  }

  document.getElementById('new-key-done').addEventListener('click', () => {
    newKeyValue.textContent = '';
    delete newKeyCopy.dataset.copy;
    newKey.hidden = true;
    if (keyForm) keyForm.elements.name.focus();
  });

  keyRows.addEventListener('click', async (event) => {
    const revoke = event.target.closest('[data-revoke]');
    if (!revoke) return;
    const name = revoke.dataset.name;
    const sure = await confirmDialog(
      `Revoke key ${name}?`,
      'Requests with this key fail at once. Applications using it need a new key.',
      'Revoke key',
    );
    if (!sure) return;
    await busy(revoke, async () => {
      try {
        await api('DELETE', `${apiPath}/keys/${encodeURIComponent(revoke.dataset.revoke)}`);
        toast(`Key ${name} revoked`, 'success');
        await refreshKeys();
      } catch (error) {
        toast(`Could not revoke ${name}: ${error.message}`, 'error');
      }
    });
  });
}

// Settings.
const settingsForm = document.getElementById('settings-form');
if (settingsForm) {
  const settingsError = document.getElementById('settings-error');
  settingsForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearFormError(settingsForm, settingsError);
    const fields = settingsForm.elements;
    const button = settingsForm.querySelector('button[type="submit"]');
    await busy(button, async () => {
      try {
        await api('PATCH', apiPath, {
          min_workers: numberOf(fields.min_workers),
          max_workers: numberOf(fields.max_workers),
          idle_timeout_seconds: numberOf(fields.idle_timeout_seconds),
          description: fields.description.value,
        });
        toast('Settings saved', 'success');
      } catch (error) {
        showFormError(settingsForm, settingsError, error);
        toast(`Could not save: ${error.message}`, 'error');
      }
    });
  });
}

const terminate = document.getElementById('terminate');
if (terminate) {
  terminate.addEventListener('click', async () => {
    const sure = await confirmDialog(
      `Terminate ${endpointName}?`,
      'Its API keys stop working at once and its provider resources are deleted. This cannot be undone.',
      'Terminate',
    );
    if (!sure) return;
    await busy(terminate, async () => {
      try {
        await api('DELETE', apiPath);
        toast(`${endpointName} terminated. Going back to your endpoints…`, 'success');
        setTimeout(() => location.assign('/endpoints'), 1200);
      } catch (error) {
        toast(`Could not terminate ${endpointName}: ${error.message}`, 'error');
      }
    });
  });
}

// Health and events: refresh the server-rendered list when an event arrives.
const events = document.getElementById('endpoint-events');
if (events) {
  let timer = null;
  const refreshEvents = () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      try {
        events.innerHTML = await fragment('events');
      } catch (error) {
        toast(`Could not refresh events: ${error.message}`, 'error');
      }
    }, 200);
  };
  const since = events.dataset.since && events.dataset.since !== '0' ? `&since=${events.dataset.since}` : '';
  liveEvents((type, data) => {
    if (type === 'ENDPOINT_STATUS_CHANGED' && data.status) {
      const badge = document.getElementById('endpoint-status');
      if (badge) badge.textContent = data.status;
    }
    refreshEvents();
  }, document.getElementById('live-status'), `?endpoint_id=${encodeURIComponent(endpointId)}${since}`);
}
