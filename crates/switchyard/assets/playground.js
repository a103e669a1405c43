// Playground: posts a test prompt to /api/v1/endpoints/{id}/playground (the
// gateway path of that endpoint) and shows the answer as it streams in, read
// with fetch + ReadableStream (EventSource cannot POST); measures time to
// first token and latency; adds the run to the "last 10 tests" table, whose
// earlier rows are the server's usage records.
import { csrf, toast, escapeHtml } from '/assets/app.js';

const form = document.getElementById('pg-form');
const $ = (id) => document.getElementById(id);

if (form) {
  const run = $('pg-run');
  const stop = $('pg-stop');
  const output = $('pg-output');
  const errorBox = $('pg-error');
  const stateBadge = $('pg-state');
  let controller = null;

  const ms = (value) => (value >= 1000 ? `${(value / 1000).toFixed(1)} s` : `${Math.round(value)} ms`);

  function setState(text, kind) {
    stateBadge.textContent = text;
    stateBadge.className = `badge badge-${kind}`;
  }

  function setFieldError(id, message) {
    const input = $(id);
    const error = $(`${id}-error`);
    input.setAttribute('aria-invalid', message ? 'true' : 'false');
    error.textContent = message || '';
    error.hidden = !message;
  }

  function number(id, low, high, integer) {
    const text = $(id).value.trim();
    const value = Number(text);
    if (text === '' || Number.isNaN(value) || value < low || value > high || (integer && !Number.isInteger(value))) {
      setFieldError(id, integer ? `A whole number from ${low} to ${high}.` : `A number from ${low} to ${high}.`);
      return undefined;
    }
    setFieldError(id, '');
    return value;
  }

  function readForm() {
    const prompt = $('pg-prompt').value;
    setFieldError('pg-prompt', prompt.trim() ? '' : 'Write a prompt first.');
    const body = {
      prompt,
      max_tokens: number('pg-max-tokens', 1, 32768, true),
      temperature: number('pg-temperature', 0, 2, false),
      top_p: number('pg-top-p', 0, 1, false),
      stream: $('pg-stream').checked,
    };
    const system = $('pg-system').value;
    if (system.trim()) body.system = system;
    const invalid = form.querySelector('[aria-invalid="true"]');
    if (invalid) {
      invalid.focus();
      return null;
    }
    return body;
  }

  function showFigures({ status, ttft, latency, usage }) {
    $('pg-status').textContent = status === undefined ? '—' : String(status);
    $('pg-ttft').textContent = ttft === undefined ? '—' : ms(ttft);
    $('pg-latency').textContent = latency === undefined ? '—' : ms(latency);
    $('pg-tokens').textContent = usage ? `${usage.prompt_tokens ?? 0} / ${usage.completion_tokens ?? 0}` : '—';
  }

  function addHistory({ status, ok, latency, ttft, usage, streamed }) {
    const rows = $('pg-history-rows');
    const select = $('pg-endpoint');
    const name = select.selectedOptions[0].textContent.split(' · ')[0];
    const row = document.createElement('tr');
    row.className = 'fresh';
    const now = new Date();
    row.innerHTML = `<td><time datetime="${now.toISOString()}">just now</time></td>
      <td>${escapeHtml(name)}</td>
      <td><span class="badge ${ok ? 'badge-active' : 'badge-failed'}">${escapeHtml(String(status))}</span></td>
      <td class="num">${latency === undefined ? '—' : ms(latency)}</td>
      <td class="num">${ttft === undefined ? '—' : ms(ttft)}</td>
      <td class="num">${usage ? `${usage.prompt_tokens ?? 0} / ${usage.completion_tokens ?? 0}` : '—'}</td>
      <td>${streamed ? 'streamed' : 'whole'}</td>`;
    $('pg-history-empty').hidden = true;
    rows.prepend(row);
    const data = [...rows.querySelectorAll('tr:not(.empty-row)')];
    for (const extra of data.slice(10)) extra.remove();
  }

  async function errorOf(response) {
    const text = await response.text();
    try {
      const data = JSON.parse(text);
      if (data && data.error && data.error.message) return data.error.message;
    } catch { /* not JSON */ }
    return `${response.status} ${response.statusText}`;
  }

  /** Reads an SSE body; calls onEvent(parsed JSON) per `data:` line until [DONE]. */
  async function readEvents(body, onEvent) {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let boundary = buffer.search(/\r?\n\r?\n/);
      while (boundary >= 0) {
        const block = buffer.slice(0, boundary);
        buffer = buffer.slice(boundary).replace(/^\r?\n\r?\n/, '');
        for (const line of block.split(/\r?\n/)) {
          if (!line.startsWith('data:')) continue;
          const data = line.slice(5).trim();
          if (data === '[DONE]') return;
          try { onEvent(JSON.parse(data)); } catch (error) {
            if (error instanceof SyntaxError) continue;
            throw error;
          }
        }
        boundary = buffer.search(/\r?\n\r?\n/);
      }
    }
  }

  async function send(event) {
    if (event) event.preventDefault();
    if (controller) return;
    const body = readForm();
    if (!body) return;
    const endpointId = $('pg-endpoint').value;
    errorBox.hidden = true;
    output.textContent = '';
    output.setAttribute('aria-busy', 'true');
    showFigures({});
    setState(body.stream ? 'streaming' : 'waiting', 'deploying');
    controller = new AbortController();
    run.disabled = true;
    run.setAttribute('aria-busy', 'true');
    stop.disabled = false;
    const started = performance.now();
    let ttft;
    let usage = null;
    let status;
    let ok = false;
    let text = '';
    try {
      const response = await fetch(`/api/v1/endpoints/${encodeURIComponent(endpointId)}/playground`, {
        method: 'POST',
        credentials: 'same-origin',
        headers: {
          'Content-Type': 'application/json',
          'X-CSRF-Token': csrf,
          Accept: body.stream ? 'text/event-stream' : 'application/json',
        },
        body: JSON.stringify(body),
        signal: controller.signal,
      });
      status = response.status;
      $('pg-status').textContent = String(status);
      if (!response.ok) throw new Error(await errorOf(response));
      const type = response.headers.get('content-type') || '';
      if (type.startsWith('text/event-stream')) {
        await readEvents(response.body, (chunk) => {
          if (chunk.error) throw new Error(chunk.error.message || 'the stream ended with an error');
          if (chunk.usage) usage = chunk.usage;
          for (const choice of chunk.choices || []) {
            const piece = (choice.delta && choice.delta.content) || choice.text || '';
            if (!piece) continue;
            if (ttft === undefined) {
              ttft = performance.now() - started;
              $('pg-ttft').textContent = ms(ttft);
            }
            text += piece;
            output.textContent = text;
          }
          output.dataset.chunks = String(Number(output.dataset.chunks || 0) + 1);
        });
      } else {
        const data = await response.json();
        ttft = performance.now() - started;
        text = (data.choices || []).map((choice) => (choice.message && choice.message.content) || choice.text || '').join('');
        usage = data.usage || null;
        output.textContent = text;
      }
      ok = true;
      const latency = performance.now() - started;
      showFigures({ status, ttft, latency, usage });
      setState('done', 'active');
      $('pg-announce').textContent = `Answer complete in ${ms(latency)}.`;
      if (!text) output.innerHTML = '<span class="muted">The model returned no text.</span>';
      addHistory({ status, ok, latency, ttft, usage, streamed: body.stream });
    } catch (error) {
      const latency = performance.now() - started;
      const aborted = error.name === 'AbortError';
      errorBox.textContent = aborted ? 'Stopped.' : error.message;
      errorBox.hidden = false;
      setState(aborted ? 'stopped' : 'failed', aborted ? 'muted' : 'failed');
      showFigures({ status, ttft, latency, usage });
      if (!aborted) toast(`The test failed: ${error.message}`, 'error');
      if (status !== undefined) addHistory({ status: aborted ? `${status} (stopped)` : status, ok: ok && !aborted, latency, ttft, usage, streamed: body.stream });
    } finally {
      controller = null;
      output.removeAttribute('aria-busy');
      run.disabled = false;
      run.removeAttribute('aria-busy');
      stop.disabled = true;
    }
  }

  form.addEventListener('submit', send);
  stop.addEventListener('click', () => { if (controller) controller.abort(); });
  $('pg-prompt').addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) send(event);
  });
}
