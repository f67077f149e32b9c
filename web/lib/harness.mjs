// Real processes for the browser tests: the caddyupload binary (Caddy with
// the upload handler and the embedded S3-compatible server), Dex, and
// Debian's Chromium driven by playwright-core. Everything listens on
// 127.0.0.1 on free ports and is stopped by the test file's after() hook.
import { spawn, execFile } from 'node:child_process'
import { createWriteStream } from 'node:fs'
import { mkdtemp, mkdir, readFile, rm, writeFile, open, copyFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join, dirname, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { randomBytes, createHash } from 'node:crypto'
import { promisify } from 'node:util'
import { chromium } from 'playwright-core'
import * as esbuild from 'esbuild'

export const webDir = resolve(dirname(fileURLToPath(import.meta.url)), '..')
export const repoDir = resolve(webDir, '..')
export const resultsDir = join(webDir, 'test-results')

const run = promisify(execFile)
const MiB = 1024 * 1024

/** A scratch directory for one test file, removed by cleanup(). */
export class Scratch {
  static async create () {
    const s = new Scratch()
    s.dir = await mkdtemp(join(tmpdir(), 'caddyupload-web-'))
    s.procs = []
    s.browsers = []
    return s
  }

  path (...p) { return join(this.dir, ...p) }

  /** Stops the browsers and processes in reverse start order, then removes the directory. */
  async cleanup () {
    for (const b of this.browsers.reverse()) await b.close().catch(() => {})
    for (const p of this.procs.reverse()) await p.stop()
    await rm(this.dir, { recursive: true, force: true })
  }
}

/** A free TCP port on 127.0.0.1. */
export function freePort () {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.unref()
    srv.on('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

/** Writes a file of random bytes and returns its path and SHA-256. */
export async function randomFile (scratch, name, size) {
  const path = scratch.path('files', name)
  await mkdir(dirname(path), { recursive: true })
  const data = randomBytes(size)
  await writeFile(path, data)
  return { path, name, size, sha256: sha256(data) }
}

export function sha256 (buf) {
  return createHash('sha256').update(buf).digest('hex')
}

/** The caddyupload binary: $CADDYUPLOAD_BIN, or built from the repository into scratch. */
export async function caddyBinary (scratch) {
  if (process.env.CADDYUPLOAD_BIN) return process.env.CADDYUPLOAD_BIN
  const out = scratch.path('bin', 'caddyupload')
  try {
    await run('go', ['build', '-o', out, './caddyupload'], { cwd: repoDir, maxBuffer: 16 * MiB })
  } catch (err) {
    throw new Error(`building the caddyupload binary failed:\n${err.stderr || err.message}`)
  }
  return out
}

/** A bcrypt hash (cost 10) of password, made by Caddy's own hash-password. */
export async function bcryptHash (bin, password) {
  const { stdout } = await run(bin, ['hash-password', '--algorithm', 'bcrypt', '--bcrypt-cost', '10', '--plaintext', password])
  const hash = stdout.trim()
  if (!/^\$2[aby]\$10\$/.test(hash)) throw new Error('hash-password printed no bcrypt hash')
  return hash
}

/** A child process whose output goes to a log file in the scratch directory. */
class Proc {
  constructor (name, child, logPath) {
    this.name = name
    this.child = child
    this.logPath = logPath
    this.exited = new Promise(resolve => child.once('exit', (code, signal) => resolve({ code, signal })))
    this.exitInfo = null
    this.exited.then(info => { this.exitInfo = info })
  }

  async logTail (lines = 40) {
    const text = await readFile(this.logPath, 'utf8').catch(() => '')
    return text.trim().split('\n').slice(-lines).join('\n')
  }

  /** Polls ready() until it resolves truthy; fails if the process exits or the time runs out. */
  async waitReady (ready, timeoutMs = 60000) {
    const deadline = Date.now() + timeoutMs
    let last
    while (Date.now() < deadline) {
      if (this.exitInfo) {
        throw new Error(`${this.name} exited (${JSON.stringify(this.exitInfo)}) before it was ready:\n${await this.logTail()}`)
      }
      try {
        if (await ready()) return
      } catch (err) {
        last = err
      }
      await new Promise(resolve => setTimeout(resolve, 100))
    }
    throw new Error(`${this.name} was not ready after ${timeoutMs} ms (${last?.message ?? 'no answer'}):\n${await this.logTail()}`)
  }

  async stop () {
    if (this.exitInfo) return
    this.child.kill('SIGTERM')
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10000)
    await this.exited
    clearTimeout(timer)
  }
}

/** Starts a process; its output is logged to scratch/logs/<name>.log. */
export async function startProcess (scratch, name, bin, args, { env = {}, cwd } = {}) {
  const logPath = scratch.path('logs', `${name}.log`)
  await mkdir(dirname(logPath), { recursive: true })
  const log = createWriteStream(logPath)
  await new Promise(resolve => log.once('open', resolve))
  const child = spawn(bin, args, { cwd: cwd ?? scratch.dir, env: { ...process.env, ...env }, stdio: ['ignore', log, log] })
  await new Promise((resolve, reject) => {
    child.once('spawn', resolve)
    child.once('error', err => reject(new Error(`${name} could not start: ${err.message}`)))
  })
  const p = new Proc(name, child, logPath)
  scratch.procs.push(p)
  return p
}

/**
 * Starts caddyupload with the given Caddyfile body (sites); the global
 * options (no admin API, no HTTPS, embedded S3 server on a free port, all
 * state in scratch) are prepended. Resolves once the site answers on url.
 */
export async function startCaddy (scratch, bin, { port, sites }) {
  const s3Port = await freePort()
  const home = scratch.path('caddy-home')
  await mkdir(home, { recursive: true })
  const caddyfile = `{
	admin off
	auto_https off
	persist_config off
	storage file_system ${scratch.path('caddy-storage')}
	embedded_s3 {
		listen 127.0.0.1:${s3Port}
		data_dir ${scratch.path('s3')}
	}
}

${sites}
`
  const path = scratch.path('Caddyfile')
  await writeFile(path, caddyfile)
  const proc = await startProcess(scratch, 'caddy', bin, ['run', '--config', path, '--adapter', 'caddyfile'], {
    env: { HOME: home, XDG_DATA_HOME: join(home, 'data'), XDG_CONFIG_HOME: join(home, 'config') }
  })
  const url = `http://127.0.0.1:${port}`
  await proc.waitReady(async () => {
    const res = await fetch(`${url}/`, { redirect: 'manual' })
    await res.arrayBuffer()
    return true
  })
  return { proc, url }
}

/**
 * Starts Dex with memory storage, the password grant, one static client
 * ("caddyupload") and the given users ({email, password, userID}).
 */
export async function startDex (scratch, bin, users) {
  const dexBin = process.env.CADDYUPLOAD_DEX_BIN
  if (!dexBin) throw new Error('CADDYUPLOAD_DEX_BIN is not set: run `eval "$(scripts/servers.sh)"` first (scripts/browser-test.sh does)')
  const port = await freePort()
  const issuer = `http://127.0.0.1:${port}/dex`
  const clientSecret = randomBytes(16).toString('hex')
  const staticPasswords = []
  for (const u of users) {
    const name = u.email.split('@')[0]
    staticPasswords.push({ email: u.email, hash: await bcryptHash(bin, u.password), username: name, name, userID: u.userID })
  }
  const config = {
    issuer,
    storage: { type: 'memory' },
    web: { http: `127.0.0.1:${port}` },
    logger: { level: 'warn' },
    oauth2: {
      passwordConnector: 'local',
      skipApprovalScreen: true,
      grantTypes: ['authorization_code', 'refresh_token', 'password'],
      responseTypes: ['code']
    },
    enablePasswordDB: true,
    staticClients: [{ id: 'caddyupload', secret: clientSecret, name: 'caddyupload browser tests', redirectURIs: ['http://127.0.0.1/callback'] }],
    staticPasswords
  }
  const path = scratch.path('dex.yaml')
  await writeFile(path, JSON.stringify(config, null, 2)) // Dex's YAML loader reads JSON
  const proc = await startProcess(scratch, 'dex', dexBin, ['serve', path])
  await proc.waitReady(async () => {
    const res = await fetch(`${issuer}/.well-known/openid-configuration`)
    const doc = await res.json()
    return res.ok && doc.issuer === issuer
  })
  return {
    proc,
    issuer,
    clientID: 'caddyupload',
    /** An ID token for the user, from the password grant. */
    async token (email, password) {
      const res = await fetch(`${issuer}/token`, {
        method: 'POST',
        headers: { Authorization: 'Basic ' + Buffer.from(`caddyupload:${clientSecret}`).toString('base64') },
        body: new URLSearchParams({ grant_type: 'password', username: email, password, scope: 'openid email profile' })
      })
      const body = await res.json()
      if (!res.ok || !body.id_token) throw new Error(`Dex refused the password grant: ${res.status} ${body.error ?? ''}`)
      return body.id_token
    }
  }
}

/**
 * Bundles the Uppy test pages (web/pages) with esbuild into scratch/pages
 * and returns that directory. The Uppy 5 page gets the v5 line: its
 * packages import "@uppy/core", which must be uppy5-core there.
 */
export async function bundlePages (scratch) {
  const src = join(webDir, 'pages')
  const out = scratch.path('pages')
  const common = { bundle: true, format: 'esm', target: 'chrome120', outdir: out, absWorkingDir: webDir, logLevel: 'silent' }
  await esbuild.build({ ...common, entryPoints: [join(src, 'uppy6.js')] })
  await esbuild.build({ ...common, entryPoints: [join(src, 'uppy5.js')], alias: { '@uppy/core': 'uppy5-core' } })
  for (const f of ['uppy6.html', 'uppy5.html', 'common.css']) await copyFile(join(src, f), join(out, f))
  return out
}

/** Launches Debian's Chromium (never a downloaded browser) with a fresh profile. */
export async function launchChromium (scratch) {
  const executablePath = process.env.CHROMIUM_BIN || '/usr/bin/chromium'
  try {
    await (await open(executablePath)).close()
  } catch {
    throw new Error(`Chromium not found at ${executablePath}: apt-get install chromium (scripts/browser-test.sh does)`)
  }
  const browser = await chromium.launch({
    executablePath,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
    timeout: 60000
  })
  scratch.browsers.push(browser)
  return browser
}

/** Saves a full-page screenshot to web/test-results/<name>.png. */
export async function screenshot (page, name) {
  await mkdir(resultsDir, { recursive: true })
  await page.screenshot({ path: join(resultsDir, `${name}.png`), fullPage: true })
}

/**
 * Polls fn until it returns a value other than undefined, for states the
 * test waits for outside the page (e.g. parts listed by the server).
 */
export async function waitFor (what, fn, timeoutMs = 120000) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = await fn()
    if (v !== undefined) return v
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}
