// Runs one browser spec: `node tests/browser/run.mjs <spec-name>`.
//
// The spec is tests/browser/specs/<spec-name>.mjs; its default export is
// `async function ({ browser, page, env, shot, step, newPage })`; `newPage(options)`
// opens another watched page in a fresh context (options: label, allowConsole,
// and any browser.newContext option such as viewport). The Rust harness
// (crates/switchyard/tests/browser.rs) starts the server and passes:
//   SWITCHYARD_CHROMIUM   the Chromium binary (Debian's /usr/bin/chromium)
//   SY_URL                the server's base URL (no trailing slash)
//   SY_TOKEN              a management token of a user with credits
//   SY_UPSTREAM_URL       a fake OpenAI-compatible upstream, ending in /v1
//   SY_USER_NAME          that user's name
//   SY_SCREENSHOTS        the folder screenshots go to
//   SY_SPEC_TIMEOUT_MS    the time the whole spec may take [default: 120000]
// Any other SY_* variable is passed to the spec in `env` under its camelCase
// name (SY_PAGE_PORT becomes env.pagePort).
// A console error, an uncaught page error, a failed assertion or the time
// limit fails the run (exit code 1).
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));

function required(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set; run the browser tests through cargo test --test browser`);
  }
  return value;
}

function camelCase(name) {
  return name
    .slice('SY_'.length)
    .toLowerCase()
    .replace(/_([a-z0-9])/g, (_, letter) => letter.toUpperCase());
}

function specEnv() {
  const env = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (name.startsWith('SY_')) env[camelCase(name)] = value;
  }
  env.url = required('SY_URL').replace(/\/+$/, '');
  env.token = required('SY_TOKEN');
  env.upstreamUrl = required('SY_UPSTREAM_URL');
  env.userName = process.env.SY_USER_NAME ?? '';
  return env;
}

async function main() {
  const specName = process.argv[2];
  if (!specName || !/^[a-z0-9_-]+$/.test(specName)) {
    throw new Error('usage: node tests/browser/run.mjs <spec-name> (letters, digits, - and _)');
  }
  const executablePath = required('SWITCHYARD_CHROMIUM');
  const screenshots = required('SY_SCREENSHOTS');
  const timeoutMs = Number(process.env.SY_SPEC_TIMEOUT_MS ?? 120000);
  mkdirSync(screenshots, { recursive: true });
  const env = specEnv();
  const spec = await import(pathToFileURL(path.join(here, 'specs', `${specName}.mjs`)).href);
  if (typeof spec.default !== 'function') {
    throw new Error(`specs/${specName}.mjs has no default export function`);
  }

  const browser = await chromium.launch({ executablePath, args: ['--no-sandbox'] });
  const problems = [];
  const started = Date.now();
  // Each page the spec opens (also with browser.newContext()) reports its errors.
  const watch = (page, label, allowConsole) => {
    page.on('console', (message) => {
      if (message.type() === 'error' && !allowConsole.some((pattern) => pattern.test(message.text()))) {
        problems.push(`${label} console error: ${message.text()} (${message.location().url})`);
      }
    });
    page.on('pageerror', (error) => problems.push(`${label} page error: ${error.stack ?? error}`));
  };
  // `label` names the page in error reports; `allowConsole` lists console
  // errors that page expects (regular expressions), such as a refused request.
  let pages = 0;
  const newPage = async ({ label, allowConsole = [], ...contextOptions } = {}) => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, ...contextOptions });
    const page = await context.newPage();
    pages += 1;
    watch(page, label ?? `page ${pages}`, allowConsole);
    page.setDefaultTimeout(15000);
    return page;
  };
  let shots = 0;
  const shot = async (name, target = page) => {
    if (!/^[a-z0-9_-]+$/.test(name)) throw new Error(`screenshot name ${name} must be letters, digits, - and _`);
    const file = path.join(screenshots, `${specName}-${name}.png`);
    await target.screenshot({ path: file, fullPage: true });
    shots += 1;
    console.log(`  screenshot ${file}`);
  };
  const step = async (label, fn) => {
    const stepStarted = Date.now();
    console.log(`- ${label}`);
    const result = await fn();
    console.log(`  ok ${label} (${Date.now() - stepStarted} ms)`);
    if (problems.length > 0) {
      throw new Error(`after step "${label}":\n${problems.join('\n')}`);
    }
    return result;
  };

  const page = await newPage({ label: 'page' });
  let timer;
  const limit = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`spec ${specName} took longer than ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    await Promise.race([spec.default({ browser, page, env, shot, step, newPage }), limit]);
    if (problems.length > 0) throw new Error(problems.join('\n'));
    console.log(`spec ${specName}: passed in ${Date.now() - started} ms, ${shots} screenshots in ${screenshots}`);
  } finally {
    clearTimeout(timer);
    await browser.close();
  }
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(`spec failed: ${error.stack ?? error}`);
    process.exit(1);
  },
);
