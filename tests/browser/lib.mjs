// Helpers shared by the browser specs.
import assert from 'node:assert/strict';

/// Signs in to the dashboard with env.token and waits for the overview at `/`.
export async function signIn(page, env) {
  await page.goto(`${env.url}/login`);
  await page.fill('#token', env.token);
  await Promise.all([
    page.waitForURL((url) => url.pathname === '/', { timeout: 15000 }),
    page.click('button[type=submit]'),
  ]);
  assert.equal(new URL(page.url()).pathname, '/');
}

/// Calls the JSON management API with a bearer token, outside the browser.
/// Returns the parsed body; throws with the server's error message otherwise.
export async function api(env, method, path, body, token = env.token) {
  const response = await fetch(`${env.url}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  const parsed = text ? JSON.parse(text) : null;
  if (!response.ok) {
    throw new Error(`${method} ${path}: ${response.status} ${parsed?.error?.message ?? text}`);
  }
  return parsed;
}

/// Creates an endpoint on the fake upstream (env.upstreamUrl) and returns
/// the API's answer ({ endpoint, api_key }).
export async function createEndpoint(env, { name, modality = 'llm', token = env.token }) {
  return api(
    env,
    'POST',
    '/api/v1/endpoints',
    {
      name,
      modality,
      provider: 'external',
      upstream: { base_url: env.upstreamUrl, api: 'openai', api_key: 'upstream-secret' },
      key: { name: 'browser-test', rate_limit_per_minute: 1000, rate_limit_per_day: 100000 },
    },
    token,
  );
}
