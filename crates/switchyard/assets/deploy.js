// Deploy wizard: four steps (source, recommendation, configuration, review),
// then the live progress of a Hugging Face deploy from the event stream, or
// the endpoint registered at once for API-based models and existing servers;
// both end with the connection info and the new key, shown once.
import { api, toast, escapeHtml, liveEvents } from '/assets/app.js';

const form = document.getElementById('wizard');
const panels = [...form.querySelectorAll('.wizard-panel')];
const steps = [...document.querySelectorAll('#steps .step')];
const back = document.getElementById('wizard-back');
const next = document.getElementById('wizard-next');
const position = document.getElementById('wizard-position');
const wizardError = document.getElementById('wizard-error');
const recommendationEl = document.getElementById('recommendation');
const $ = (id) => document.getElementById(id);

const API_PRESETS = {
  openai: { base: 'https://api.openai.com/v1', model: 'gpt-4o-mini' },
  anthropic: { base: 'https://api.anthropic.com/v1', model: 'claude-3-5-haiku-latest' },
  google: { base: 'https://generativelanguage.googleapis.com/v1beta', model: 'gemini-2.0-flash' },
  azure: { base: 'https://YOUR-RESOURCE.openai.azure.com', model: '' },
};
const PROVIDER_LABELS = {
  openai: 'OpenAI', anthropic: 'Anthropic', google: 'Google Gemini', azure: 'Azure OpenAI',
  runpod: 'RunPod', huggingface: 'Hugging Face', replicate: 'Replicate', together: 'Together',
  modal: 'Modal', 'self-hosted': 'Self-hosted', external: 'External',
};
const STAGES = [
  ['queued', 'Queued'], ['analyzing', 'Analyzing the model'], ['selecting', 'Choosing provider and GPU'],
  ['provisioning', 'Provisioning'], ['waiting_ready', 'Waiting until ready'], ['issuing_key', 'Issuing the API key'],
  ['ready', 'Ready'],
];
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const HF_RE = /^[A-Za-z0-9][A-Za-z0-9._-]*\/[A-Za-z0-9._-]+$/;

let step = 1;
let preview = null; // the last preview answer (HF)
let previewKey = ''; // the source fields it was made for
let choice = null; // {provider, gpu_type, label} picked in step 2 (HF)

const source = () => form.querySelector('input[name="source"]:checked').value;
const value = (id) => $(id).value.trim();
const credits = (usd) => (usd * 100).toLocaleString('en-US', { maximumFractionDigits: usd * 100 < 1 ? 4 : 2 });
const seconds = (ms) => (ms >= 1000 ? `${(ms / 1000).toFixed(ms >= 10000 ? 0 : 1)} s` : `${ms} ms`);

// --- Field errors ----------------------------------------------------------

function setFieldError(id, message) {
  const input = $(id);
  const error = $(`${id}-error`);
  if (!input || !error) return;
  input.setAttribute('aria-invalid', message ? 'true' : 'false');
  error.textContent = message || '';
  error.hidden = !message;
}

function clearErrors() {
  for (const error of form.querySelectorAll('.field-error')) {
    error.hidden = true;
    error.textContent = '';
  }
  for (const input of form.querySelectorAll('[aria-invalid="true"]')) input.setAttribute('aria-invalid', 'false');
  wizardError.hidden = true;
}

function showWizardError(message) {
  wizardError.textContent = message;
  wizardError.hidden = false;
}

/** Integer field check: returns the number, null when empty and optional, or sets an error. */
function integer(id, low, high, { optional = false } = {}) {
  const text = value(id);
  if (text === '') {
    if (optional) return null;
    setFieldError(id, 'Required.');
    return undefined;
  }
  const number = Number(text);
  if (!Number.isInteger(number) || number < low || number > high) {
    setFieldError(id, `Enter a whole number from ${low} to ${high}.`);
    return undefined;
  }
  return number;
}

function httpUrl(id, { optional = false } = {}) {
  const text = value(id);
  if (!text) {
    if (optional) return null;
    setFieldError(id, 'Required.');
    return undefined;
  }
  try {
    const url = new URL(text);
    if ((url.protocol === 'http:' || url.protocol === 'https:') && !url.search && url.hostname) return text.replace(/\/+$/, '');
  } catch { /* reported below */ }
  setFieldError(id, 'Enter an absolute http:// or https:// URL without a query.');
  return undefined;
}

/** The model id of the HF field: `owner/name` from either form. */
function hfModelId() {
  let text = value('hf-model');
  const match = text.match(/^https?:\/\/(?:www\.)?huggingface\.co\/([^?#]+)/);
  if (match) text = match[1].split('/').slice(0, 2).join('/');
  return text;
}

function validateStep(number) {
  clearErrors();
  const first = () => form.querySelector(`[data-panel="${number}"] [aria-invalid="true"]`);
  if (number === 1) {
    const kind = source();
    if (kind === 'hf') {
      const model = hfModelId();
      if (!model) setFieldError('hf-model', 'Enter a model id such as Qwen/Qwen2.5-0.5B-Instruct.');
      else if (!HF_RE.test(model)) setFieldError('hf-model', 'Use the form owner/name, e.g. Qwen/Qwen2.5-0.5B-Instruct.');
      integer('hf-requests', 1, 100000000);
      const params = value('hf-params');
      if (params && !/^\d+(\.\d+)?\s*[KMBT]?$/i.test(params)) setFieldError('hf-params', 'A parameter count such as 7B, 135M or 1.5B.');
    } else if (kind === 'api') {
      httpUrl('api-base');
      if (!value('api-model')) setFieldError('api-model', apiProvider() === 'azure' ? 'Enter the Azure deployment name.' : 'Enter the model name.');
      if (!value('api-key')) setFieldError('api-key', 'The provider needs an API key.');
      if (apiProvider() === 'azure' && !/^[A-Za-z0-9.-]{1,40}$/.test(value('api-version'))) setFieldError('api-version', 'Looks like 2024-10-21.');
      if (apiProvider() === 'azure' && value('api-base').includes('YOUR-RESOURCE')) setFieldError('api-base', 'Replace YOUR-RESOURCE with your Azure OpenAI resource name.');
    } else {
      httpUrl('ext-base');
    }
  }
  if (number === 2 && source() === 'hf') {
    if (!preview) {
      showWizardError('The recommendation has not loaded; fix the source or try again.');
      return false;
    }
    if (!choice) {
      showWizardError('Pick a provider and GPU to continue.');
      return false;
    }
  }
  if (number === 3) {
    const name = value('cfg-name');
    if (!name) setFieldError('cfg-name', 'Required.');
    else if (!NAME_RE.test(name)) setFieldError('cfg-name', "1 to 64 letters, digits, '-', '_' or '.', starting with a letter or digit.");
    integer('cfg-timeout', 1, 3600, { optional: true });
    if ($('cfg-description').value.length > 2000) setFieldError('cfg-description', 'At most 2000 characters.');
    if (source() === 'hf') {
      const min = integer('cfg-min', 0, 100);
      const max = integer('cfg-max', 1, 100);
      integer('cfg-idle', 1, 86400);
      if (min !== undefined && max !== undefined && min > max) setFieldError('cfg-min', 'Must not exceed max workers.');
    }
  }
  const invalid = first();
  if (invalid) {
    invalid.focus();
    return false;
  }
  return wizardError.hidden;
}

// --- Navigation ------------------------------------------------------------

function show(number, { focus = true } = {}) {
  step = number;
  for (const panel of panels) panel.hidden = Number(panel.dataset.panel) !== number;
  for (const item of steps) {
    const n = Number(item.dataset.step);
    if (n === number) item.setAttribute('aria-current', 'step');
    else item.removeAttribute('aria-current');
    item.classList.toggle('done', n < number);
  }
  back.disabled = number === 1;
  next.textContent = number === 4 ? (source() === 'hf' ? 'Deploy' : 'Create endpoint') : 'Next';
  position.textContent = `Step ${number} of 4`;
  if (focus) {
    const heading = $(`panel-${number}-title`);
    if (heading) heading.focus();
  }
}

async function advance() {
  if (!validateStep(step)) return;
  if (step === 1) {
    show(2);
    await loadRecommendation();
    return;
  }
  if (step === 2) {
    prefillConfiguration();
    show(3);
    return;
  }
  if (step === 3) {
    renderReview();
    show(4);
    return;
  }
  await submit();
}

form.addEventListener('submit', (event) => {
  event.preventDefault();
  if (next.disabled) return;
  advance();
});
back.addEventListener('click', () => {
  clearErrors();
  if (step > 1) show(step - 1);
});

// --- Step 1: source ----------------------------------------------------------

function apiProvider() {
  return $('api-provider').value;
}

function applySource() {
  const kind = source();
  for (const fields of form.querySelectorAll('.source-fields')) fields.hidden = fields.dataset.source !== kind;
  for (const element of form.querySelectorAll('[data-only="hf"]')) element.hidden = kind !== 'hf';
  for (const element of form.querySelectorAll('[data-only="routed"]')) element.hidden = kind === 'hf';
  clearErrors();
}

let lastPreset = null;
function applyProvider() {
  const preset = API_PRESETS[apiProvider()];
  // Replace the prefilled values, never what the user typed.
  if (!value('api-base') || (lastPreset && value('api-base') === lastPreset.base)) $('api-base').value = preset.base;
  if (!value('api-model') || (lastPreset && value('api-model') === lastPreset.model)) $('api-model').value = preset.model;
  $('api-version-field').hidden = apiProvider() !== 'azure';
  $('api-model-hint').textContent = apiProvider() === 'azure' ? 'the deployment name in your Azure resource' : "the provider's model name";
  lastPreset = preset;
}

for (const radio of form.querySelectorAll('input[name="source"]')) radio.addEventListener('change', applySource);
$('api-provider').addEventListener('change', applyProvider);

// --- Step 2: recommendation --------------------------------------------------

function sourceKey() {
  return JSON.stringify([source(), hfModelId(), value('hf-requests'), $('hf-budget').value, value('hf-params')]);
}

async function loadRecommendation() {
  const kind = source();
  if (kind !== 'hf') {
    renderRouted(kind);
    return;
  }
  if (preview && previewKey === sourceKey()) return;
  preview = null;
  choice = null;
  recommendationEl.setAttribute('aria-busy', 'true');
  recommendationEl.innerHTML = '<p class="muted loading">Analyzing the model and comparing providers…</p>';
  next.disabled = true;
  const params = new URLSearchParams({
    model_id: hfModelId(),
    requests_per_day: value('hf-requests'),
    budget: $('hf-budget').value,
  });
  if (value('hf-params')) params.set('params', value('hf-params').replace(/\s+/g, ''));
  try {
    const answer = await api('GET', `/api/v1/endpoints/deploy/preview?${params}`);
    preview = answer.preview;
    previewKey = sourceKey();
    renderRecommendation(preview);
  } catch (error) {
    recommendationEl.innerHTML = '';
    const field = { model_id: 'hf-model', params: 'hf-params', requests_per_day: 'hf-requests' }[paramOf(error)];
    if (field || error.status === 404 || error.code === 'model_size_unknown' || error.code === 'model_analysis_failed') {
      show(1);
      setFieldError(field || (error.code === 'model_size_unknown' ? 'hf-params' : 'hf-model'), fieldMessage(error.message));
      $(field || 'hf-model').focus();
    } else {
      showWizardError(`Could not load the recommendation: ${error.message}`);
    }
  } finally {
    recommendationEl.setAttribute('aria-busy', 'false');
    next.disabled = false;
  }
}

/** A server message without its leading `field: ` (shown under that field). */
function fieldMessage(message) {
  return message.replace(/^[a-z_.]+: /, '');
}

function paramOf(error) {
  return error.param || (error.message.match(/^([a-z_.]+):/) || [])[1];
}

function option({ id, provider, gpu, gpuCount, perRequest, monthly, coldStart, available, message, note, checked }) {
  const label = `${PROVIDER_LABELS[provider] || provider}${gpu ? ` · ${gpuCount > 1 ? `${gpuCount} × ` : ''}${gpu}` : ''}`;
  return `<label class="option${available ? '' : ' option-off'}">
    <input type="radio" name="choice" value="${escapeHtml(id)}" data-provider="${escapeHtml(provider)}" data-gpu="${escapeHtml(gpu || '')}" data-label="${escapeHtml(label)}"${checked ? ' checked' : ''}${available ? '' : ' disabled'}>
    <span class="option-body">
      <span class="option-title"><span class="strong">${escapeHtml(label)}</span>${note ? ` <span class="badge badge-idle">${escapeHtml(note)}</span>` : ''}${available ? '' : ' <span class="badge badge-muted">unavailable</span>'}</span>
      <span class="option-figures">
        ${perRequest === null ? '' : `<span><span class="muted">per request</span> ${escapeHtml(perRequest)}</span>`}
        ${monthly === null ? '' : `<span><span class="muted">monthly</span> ${escapeHtml(monthly)}</span>`}
        ${coldStart === null ? '' : `<span><span class="muted">cold start</span> ${escapeHtml(coldStart)}</span>`}
      </span>
      ${message ? `<span class="muted small">${escapeHtml(message)}</span>` : ''}
    </span>
  </label>`;
}

function renderRecommendation(data) {
  const best = data.recommendation;
  const model = data.model;
  const availability = Object.fromEntries(data.providers.map((p) => [p.provider, p]));
  const costs = best.cost_estimates;
  const options = [];
  let anyChecked = false;
  // The first usable option is preselected.
  const firstUsable = (available) => {
    const checked = available && !anyChecked;
    anyChecked = anyChecked || checked;
    return checked;
  };
  const bestAvailable = availability[best.provider] ? availability[best.provider].available : best.deployable;
  options.push(option({
    id: 'best', provider: best.provider, gpu: best.gpu_type, gpuCount: best.configuration.gpu_count,
    perRequest: `${credits(costs.per_request)} credits`, monthly: `${credits(costs.monthly_estimate)} credits`,
    coldStart: seconds(best.performance.cold_start_p50_ms), available: bestAvailable,
    message: bestAvailable ? best.reason : (availability[best.provider] || {}).message, note: 'recommended', checked: firstUsable(bestAvailable),
  }));
  best.alternatives.forEach((alt, index) => {
    const info = availability[alt.provider] || {};
    const available = alt.available && info.available !== false;
    options.push(option({
      id: `alt-${index}`, provider: alt.provider, gpu: alt.gpu_type, gpuCount: alt.gpu_count,
      perRequest: `${credits(alt.cost_estimates.per_request)} credits`, monthly: `${credits(alt.cost_estimates.monthly_estimate)} credits`,
      coldStart: seconds(alt.cold_start_p50_ms), available, message: available ? alt.tradeoff : info.message,
      checked: firstUsable(available),
    }));
  });
  // Providers outside the price table that can take this model (a machine of your own).
  for (const provider of data.providers) {
    if (provider.provider !== 'self-hosted' || !provider.available) continue;
    options.push(option({
      id: 'self-hosted', provider: 'self-hosted', gpu: '', perRequest: null, monthly: null, coldStart: null,
      available: true, message: 'Runs on the configured machine of this server; no GPU price applies.',
      checked: firstUsable(true),
    }));
  }
  const unavailable = data.providers.filter((p) => !p.available && p.provider !== 'external');
  recommendationEl.innerHTML = `
    <div class="cards cards-tight">
      <div class="card stat"><h3 class="stat-label">Model</h3><p class="stat-value stat-sm">${escapeHtml(best.model.parameters_label)}</p><p class="stat-note muted">${escapeHtml(model.modality)} · ${escapeHtml(model.precision)} · ${escapeHtml(String(model.vram_required_gb))} GB VRAM</p></div>
      <div class="card stat"><h3 class="stat-label">Cost per request</h3><p class="stat-value stat-sm" id="rec-per-request">${credits(costs.per_request)}</p><p class="stat-note muted">credits ($${escapeHtml(String(costs.per_request))})</p></div>
      <div class="card stat"><h3 class="stat-label">Monthly estimate</h3><p class="stat-value stat-sm" id="rec-monthly">${credits(data.monthly_estimate.usd)}</p><p class="stat-note muted">credits at ${escapeHtml(data.monthly_estimate.requests_per_day.toLocaleString('en-US'))} requests/day</p></div>
      <div class="card stat"><h3 class="stat-label">Cold start</h3><p class="stat-value stat-sm">${seconds(best.performance.cold_start_p50_ms)}</p><p class="stat-note muted">p95 ${seconds(best.performance.cold_start_p95_ms)}</p></div>
    </div>
    <p class="muted">${escapeHtml(best.reason || '')}</p>
    <fieldset class="options" id="choices">
      <legend class="strong">Provider and GPU</legend>
      ${options.join('')}
    </fieldset>
    ${unavailable.length ? `<details class="availability"><summary>Provider availability (${data.providers.length - unavailable.length} of ${data.providers.length} usable)</summary><ul>${data.providers.map((p) => `<li><span class="badge ${p.available ? 'badge-active' : 'badge-muted'}">${p.available ? 'available' : 'unavailable'}</span> ${escapeHtml(PROVIDER_LABELS[p.provider] || p.provider)}${p.message ? ` <span class="muted small">${escapeHtml(p.message)}</span>` : ''}</li>`).join('')}</ul></details>` : ''}
  `;
  const checked = recommendationEl.querySelector('input[name="choice"]:checked');
  setChoice(checked);
  if (!checked) showWizardError('No provider that can run this model is configured on this server. Configure one (see the availability list) or connect an existing server instead.');
  recommendationEl.querySelectorAll('input[name="choice"]').forEach((radio) => radio.addEventListener('change', () => setChoice(radio)));
}

function setChoice(radio) {
  if (!radio) {
    choice = null;
    return;
  }
  wizardError.hidden = true;
  choice = radio.value === 'best'
    ? { provider: null, gpu_type: null, label: radio.dataset.label, recommended: radio.dataset.provider }
    : { provider: radio.dataset.provider, gpu_type: radio.dataset.gpu || null, label: radio.dataset.label };
}

function renderRouted(kind) {
  const inCredits = form.dataset.inputCredits;
  const outCredits = form.dataset.outputCredits;
  const target = kind === 'api'
    ? `${$('api-provider').selectedOptions[0].textContent} (${escapeHtml(value('api-model'))})`
    : escapeHtml(value('ext-base'));
  recommendationEl.innerHTML = `
    <div class="cards cards-tight">
      <div class="card stat"><h3 class="stat-label">Routed to</h3><p class="stat-value stat-sm">${kind === 'api' ? escapeHtml($('api-provider').selectedOptions[0].textContent) : 'Your server'}</p><p class="stat-note muted mono">${kind === 'api' ? escapeHtml(value('api-model')) : escapeHtml(value('ext-base'))}</p></div>
      <div class="card stat"><h3 class="stat-label">GPU</h3><p class="stat-value stat-sm">None</p><p class="stat-note muted">nothing is provisioned</p></div>
      <div class="card stat"><h3 class="stat-label">Price</h3><p class="stat-value stat-sm">${escapeHtml(inCredits)} / ${escapeHtml(outCredits)}</p><p class="stat-note muted">credits per 1k input / output tokens</p></div>
      <div class="card stat"><h3 class="stat-label">Cold start</h3><p class="stat-value stat-sm">None</p><p class="stat-note muted">the server is already running</p></div>
    </div>
    <p class="muted">Requests to the new endpoint go through the gateway (keys, rate limits, credits and usage) to ${target}${kind === 'api' ? ' with your provider key' : ''}. Each request is charged by the tariff above.</p>`;
}

// --- Step 3: configuration -----------------------------------------------------

function defaultName() {
  const kind = source();
  const raw = kind === 'hf' ? hfModelId().split('/').pop() : kind === 'api' ? value('api-model') : (value('ext-model') || 'my-server');
  const name = raw.toLowerCase().replace(/[^a-z0-9._-]+/g, '-').replace(/^[^a-z0-9]+/, '').slice(0, 64);
  return name || 'model';
}

let suggestedName = '';
function prefillConfiguration() {
  if (!value('cfg-name') || value('cfg-name') === suggestedName) {
    suggestedName = defaultName();
    $('cfg-name').value = suggestedName;
  }
  if (source() === 'hf' && preview && !prefillConfiguration.done) {
    const config = preview.recommendation.configuration;
    $('cfg-min').value = config.min_workers;
    $('cfg-max').value = config.max_workers;
    $('cfg-idle').value = config.idle_timeout_seconds;
    prefillConfiguration.done = true;
  }
}

// --- Step 4: review --------------------------------------------------------------

function renderReview() {
  const kind = source();
  const rows = [];
  const add = (label, text) => rows.push(`<dt>${escapeHtml(label)}</dt><dd>${escapeHtml(text)}</dd>`);
  if (kind === 'hf') {
    add('Source', `Hugging Face · ${hfModelId()}`);
    add('Provider and GPU', choice ? (choice.provider ? choice.label : `${choice.label} (recommended, with fallback to the alternatives)`) : '—');
    if (choice && choice.provider !== 'self-hosted') {
      const best = preview.recommendation.cost_estimates;
      add('Estimate', `${credits(best.per_request)} credits per request · ${credits(preview.monthly_estimate.usd)} credits per month`);
    }
    add('Scaling', `${value('cfg-min')}–${value('cfg-max')} workers, idle timeout ${value('cfg-idle')} s`);
  } else if (kind === 'api') {
    add('Source', `${$('api-provider').selectedOptions[0].textContent} · ${value('api-model')}`);
    add('Base URL', value('api-base'));
    add('Provider key', 'set (stored encrypted)');
    if (apiProvider() === 'azure') add('API version', value('api-version'));
    add('Price', `${form.dataset.inputCredits} / ${form.dataset.outputCredits} credits per 1k input / output tokens`);
  } else {
    add('Source', 'Existing server');
    add('Base URL', value('ext-base'));
    add('Model', value('ext-model') || 'read from the server');
    add('Server key', value('ext-key') ? 'set (stored encrypted)' : 'none');
    add('Price', `${form.dataset.inputCredits} / ${form.dataset.outputCredits} credits per 1k input / output tokens`);
  }
  add('Endpoint name', value('cfg-name'));
  add('Timeout', value('cfg-timeout') ? `${value('cfg-timeout')} s` : 'server default');
  if (value('cfg-description')) add('Description', value('cfg-description'));
  $('review').innerHTML = rows.join('');
}

// --- Submit --------------------------------------------------------------------

/** Where a server error belongs: [step, field id]. */
const PARAM_FIELDS = {
  model_id: [1, 'hf-model'], params: [1, 'hf-params'], requests_per_day: [1, 'hf-requests'], source_url: [1, 'ext-base'],
  provider: [2, null], gpu_type: [2, null],
  name: [3, 'cfg-name'], model_name: [3, 'cfg-name'], description: [3, 'cfg-description'],
  min_workers: [3, 'cfg-min'], max_workers: [3, 'cfg-max'], idle_timeout_seconds: [3, 'cfg-idle'], timeout_seconds: [3, 'cfg-timeout'],
};

function placeServerError(error) {
  const param = paramOf(error);
  let place = PARAM_FIELDS[param];
  if (param && param.startsWith('upstream.')) {
    const routedFields = { base_url: source() === 'api' ? 'api-base' : 'ext-base', model: source() === 'api' ? 'api-model' : 'ext-model', api_key: source() === 'api' ? 'api-key' : 'ext-key', api_version: 'api-version' };
    place = [1, routedFields[param.slice('upstream.'.length)] || null];
  }
  if (error.code === 'upstream_model_discovery_failed') place = [1, 'ext-model'];
  if (error.code === 'conflict' || /already exists/i.test(error.message)) place = [3, 'cfg-name'];
  if (!place) {
    showWizardError(error.message);
    return;
  }
  show(place[0], { focus: false });
  if (place[1]) {
    setFieldError(place[1], fieldMessage(error.message));
    $(place[1]).focus();
  } else {
    showWizardError(error.message);
  }
}

async function submit() {
  next.disabled = true;
  next.setAttribute('aria-busy', 'true');
  back.disabled = true;
  try {
    if (source() === 'hf') await deployHf();
    else await registerRouted();
  } catch (error) {
    placeServerError(error);
    toast(`Not deployed: ${error.message}`, 'error');
  } finally {
    next.disabled = false;
    next.removeAttribute('aria-busy');
    back.disabled = step === 1;
  }
}

function optionalInt(id) {
  return value(id) === '' ? undefined : Number(value(id));
}

async function deployHf() {
  const body = {
    model_id: hfModelId(),
    model_name: value('cfg-name'),
    min_workers: Number(value('cfg-min')),
    max_workers: Number(value('cfg-max')),
    idle_timeout_seconds: Number(value('cfg-idle')),
    requests_per_day: Number(value('hf-requests')),
    budget: $('hf-budget').value,
  };
  if (value('cfg-description')) body.description = value('cfg-description');
  if (value('hf-params')) body.params = value('hf-params').replace(/\s+/g, '');
  if (choice && choice.provider) body.provider = choice.provider;
  if (choice && choice.gpu_type) body.gpu_type = choice.gpu_type;
  const accepted = await api('POST', '/api/v1/endpoints/deploy', body);
  const endpointId = accepted.endpoint_id;
  // Subscribe at once; `since=0` replays what this endpoint already reported.
  startProgress(accepted.endpoint);
  const timeout = optionalInt('cfg-timeout');
  if (timeout !== undefined) {
    try {
      await api('PATCH', `/api/v1/endpoints/${encodeURIComponent(endpointId)}`, { timeout_seconds: timeout });
    } catch (error) {
      toast(`Deploying, but the timeout was not saved: ${error.message}`, 'error');
    }
  }
}

async function registerRouted() {
  const kind = source();
  const upstream = kind === 'api'
    ? { base_url: value('api-base'), api: apiProvider(), model: value('api-model'), api_key: value('api-key') }
    : { base_url: value('ext-base'), api: 'openai' };
  if (kind === 'api' && apiProvider() === 'azure') upstream.api_version = value('api-version');
  if (kind === 'existing' && value('ext-model')) upstream.model = value('ext-model');
  if (kind === 'existing' && value('ext-key')) upstream.api_key = value('ext-key');
  const body = {
    name: value('cfg-name'),
    modality: 'llm',
    provider: 'external',
    source_type: 'external',
    upstream,
    key: { name: 'default' },
  };
  if (kind === 'api') body.base_model = value('api-model');
  if (value('cfg-description')) body.description = value('cfg-description');
  const timeout = optionalInt('cfg-timeout');
  if (timeout !== undefined) body.timeout_seconds = timeout;
  const created = await api('POST', '/api/v1/endpoints', body);
  toast(`${created.endpoint.name} created`, 'success');
  showDone(created.endpoint, created.api_key);
}

// --- Progress and the final view ---------------------------------------------------

let events = null;
let finished = false;
let statusTimer = null;

function startProgress(endpoint) {
  $('wizard-view').hidden = true;
  const view = $('progress-view');
  view.hidden = false;
  $('progress-title').textContent = `Deploying ${endpoint.name}`;
  $('stages').innerHTML = STAGES.map(([key, label]) => `<li data-stage="${key}"><span class="stage-dot" aria-hidden="true"></span>${escapeHtml(label)}</li>`).join('');
  setProgress('queued', 0, 'Queued; a deploy worker picks it up in a moment.');
  $('progress-title').focus();
  finished = false;
  events = liveEvents((type, data) => onDeployEvent(endpoint, type, data), $('progress-live'), `?endpoint_id=${encodeURIComponent(endpoint.id)}&since=0`, { takeKeys: true });
  // The stream is the source of truth; the job status is read as well in case it is unavailable.
  statusTimer = setInterval(() => pollStatus(endpoint), 5000);
}

function setProgress(stage, percent, text) {
  const bar = $('progress-bar');
  bar.value = percent;
  bar.textContent = `${percent}%`;
  $('progress-text').textContent = text || `${labelOf(stage)} · ${percent}%`;
  const index = STAGES.findIndex(([key]) => key === stage);
  $('stages').querySelectorAll('li').forEach((item, i) => {
    item.classList.toggle('done', index >= 0 && (i < index || (stage === 'ready' && i === index)));
    item.classList.toggle('current', i === index && stage !== 'ready');
    if (i === index) item.setAttribute('aria-current', 'step');
    else item.removeAttribute('aria-current');
  });
}

function labelOf(stage) {
  const found = STAGES.find(([key]) => key === stage);
  return found ? found[1] : stage;
}

function onDeployEvent(endpoint, type, data) {
  if (finished) return;
  if (type === 'DEPLOYMENT_PROGRESS') {
    setProgress(data.stage, Number(data.percent ?? data.progress ?? 0), data.message ? `${labelOf(data.stage)} · ${data.message}` : undefined);
  } else if (type === 'DEPLOYMENT_FAILED') {
    fail(data.error || 'the deploy failed');
  } else if (type === 'DEPLOYMENT_COMPLETE') {
    finish(endpoint, data.api_key || null);
  }
}

function fail(message) {
  finished = true;
  stopWatching();
  const error = $('progress-error');
  error.textContent = `The deploy failed: ${message}`;
  error.hidden = false;
  $('progress-actions').hidden = false;
  $('progress-text').textContent = 'Failed';
  toast('The deploy failed', 'error');
}

async function finish(endpoint, key) {
  finished = true;
  stopWatching();
  setProgress('ready', 100, 'Ready');
  let apiKey = key;
  let current = endpoint;
  try {
    const status = await api('GET', `/api/v1/endpoints/${encodeURIComponent(endpoint.id)}/deployment`);
    apiKey = apiKey || status.api_key;
    const fresh = await api('GET', `/api/v1/endpoints/${encodeURIComponent(endpoint.id)}`);
    current = fresh.endpoint || current;
  } catch (error) {
    toast(`Deployed, but the endpoint could not be read: ${error.message}`, 'error');
  }
  toast(`${current.name} is ready`, 'success');
  showDone(current, apiKey);
}

async function pollStatus(endpoint) {
  if (finished) return;
  try {
    const status = await api('GET', `/api/v1/endpoints/${encodeURIComponent(endpoint.id)}/deployment`);
    const job = status.deployment;
    if (finished) return;
    if (job.state === 'failed') fail(job.error || 'the deploy failed');
    else if (job.state === 'succeeded') finish(endpoint, status.api_key);
    else setProgress(job.stage, Number(job.percent || 0));
  } catch (error) {
    $('progress-text').textContent = `Could not read the deploy status: ${error.message}`;
  }
}

function stopWatching() {
  if (events) events.close();
  events = null;
  clearInterval(statusTimer);
}

async function showDone(endpoint, apiKey) {
  $('wizard-view').hidden = true;
  $('progress-view').hidden = true;
  const done = $('done-view');
  done.hidden = false;
  $('done-title').textContent = `${endpoint.name} is ready`;
  if (apiKey) {
    $('new-key').textContent = apiKey;
    $('copy-key').dataset.copy = apiKey;
    $('key-box').hidden = false;
    $('key-missing').hidden = true;
  } else {
    $('key-box').hidden = true;
    $('key-missing').hidden = false;
  }
  $('done-endpoint-url').textContent = endpoint.endpoint_url;
  $('copy-endpoint-url').dataset.copy = endpoint.endpoint_url;
  $('done-base-url').textContent = endpoint.openai_base_url;
  $('copy-base-url').dataset.copy = endpoint.openai_base_url;
  $('done-model').textContent = endpoint.name;
  $('done-manage').href = `/endpoints/${encodeURIComponent(endpoint.id)}`;
  $('done-playground').href = `/playground?endpoint=${encodeURIComponent(endpoint.id)}`;
  $('done-title').focus();
  try {
    const response = await fetch(`/endpoints/${encodeURIComponent(endpoint.id)}/code`, { credentials: 'same-origin' });
    if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
    $('done-samples').innerHTML = await response.text();
  } catch (error) {
    $('done-samples').innerHTML = `<p class="alert alert-error">Could not load code samples: ${escapeHtml(error.message)}</p>`;
  }
}

$('progress-restart').addEventListener('click', () => location.assign('/deploy'));

applySource();
applyProvider();
show(1, { focus: false });
