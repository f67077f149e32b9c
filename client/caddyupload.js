// caddyupload browser client: a dependency-free ES module, served by every
// upload route at GET {base}/client.js.
//
//   import { upload } from '/uploads/client.js'
//   const record = await upload(file, { base: '/uploads', onProgress: (loaded, total) => {} })
//
// The bytes go straight to object storage with the presigned requests the
// route hands out; the route only sees metadata, then confirms the upload.
// The SHA-256 of what is sent (the file for a single PUT, each part of a
// multipart upload) is declared and signed into its URL, so storage itself
// refuses other bytes.

const STORE_KEY = 'caddyupload:pending'
// The route's default multipart_threshold.
const DEFAULT_MULTIPART_THRESHOLD = 100 * 1024 * 1024

/** An upload failed; `message` is the server's error message when it sent one. */
export class UploadError extends Error {
  /**
   * @param {string} message
   * @param {{status?: number, code?: string}} [info]
   */
  constructor (message, { status = 0, code = '' } = {}) {
    super(message)
    this.name = 'UploadError'
    /** HTTP status, 0 for a network failure. */
    this.status = status
    /** The API's error code, e.g. "too_large", or S3's, e.g. "AccessDenied". */
    this.code = code
  }
}

/**
 * @typedef {object} UploadOptions
 * @property {string} base The upload route's path or URL, e.g. "/uploads".
 * @property {Record<string,string>} [headers] Sent on every API call (e.g. Authorization), never to storage.
 * @property {Record<string,string>} [metadata] Stored with the record.
 * @property {(loaded: number, total: number) => void} [onProgress] Bytes sent to storage so far.
 * @property {(record: object) => void} [onCreate] Called with the create answer (its `id` can be aborted).
 * @property {(status: 'uploading'|'confirming') => void} [onStatus] Called when the stage changes.
 * @property {AbortSignal} [signal] Stops every request in flight (the record stays pending; see abort()).
 * @property {number} [concurrency=4] Parts uploaded at once.
 * @property {number} [retries=3] Retries of each storage request after a network or server error.
 * @property {boolean} [checksums=true] Declare the SHA-256 of the file (single PUT) or of each part
 *   (multipart), hashed with WebCrypto, which exists in secure contexts only (https, localhost):
 *   elsewhere nothing is declared. Routes with require_checksum refuse uploads without them.
 * @property {number} [multipartThreshold=104857600] The route's multipart_threshold: a file of at
 *   most this many bytes goes up in one request, and is hashed whole (in memory) for its checksum.
 */

/**
 * Uploads a file: creates the upload, sends the bytes to storage (one PUT or
 * POST form, or parts in parallel for large files), then confirms it.
 * Multipart uploads are remembered in localStorage until they finish, so
 * that resume() can continue them after a page reload.
 * @param {File} file
 * @param {UploadOptions} opts
 * @returns {Promise<object>} the confirmed record
 */
export async function upload (file, opts) {
  const created = await create(file, opts)
  opts.onCreate?.(created)
  opts.onStatus?.('uploading')
  if (!created.multipart) {
    await sendSingle(file, created, opts)
    opts.onStatus?.('confirming')
    return api(opts, 'POST', `/${created.id}/complete`)
  }
  remember({ id: created.id, base: opts.base, name: file.name, size: file.size, lastModified: file.lastModified, partSize: created.multipart.part_size, partCount: created.multipart.part_count, etags: {} })
  return sendParts(file, created.id, created.multipart.part_size, created.multipart.part_count, new Map(), opts)
}

// create creates the upload, declaring the file's SHA-256 when it will be
// a single PUT (the route verifies a whole-file checksum for those only).
async function create (file, opts) {
  const body = { filename: file.name, size: file.size, type: file.type || 'application/octet-stream', metadata: opts.metadata }
  if (!checksums(opts) || file.size > (opts.multipartThreshold ?? DEFAULT_MULTIPART_THRESHOLD)) {
    return api(opts, 'POST', '/', body)
  }
  body.sha256 = await sha256Hex(file)
  opts.signal?.throwIfAborted()
  try {
    return await api(opts, 'POST', '/', body)
  } catch (err) {
    // The route refuses a whole-file checksum it cannot verify: it sends
    // this file otherwise (method post, or a lower multipart_threshold than
    // multipartThreshold). Without it, a multipart upload still gets part
    // checksums; any other invalid_request comes back again.
    if (err.code !== 'invalid_request') throw err
    delete body.sha256
    return api(opts, 'POST', '/', body)
  }
}

function checksums (opts) {
  return opts.checksums !== false && !!globalThis.crypto?.subtle
}

// sha256Hex hashes a Blob; WebCrypto has no streaming digest, so the blob
// is read whole: a part, or a file no larger than the multipart threshold.
async function sha256Hex (blob) {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', await blob.arrayBuffer()))
  return Array.from(digest, b => b.toString(16).padStart(2, '0')).join('')
}

/**
 * Continues a multipart upload created by upload(), for instance after a
 * page reload: lists the parts storage already holds and sends only the
 * others. `file` must be the same file (name, size and last modification).
 * A listed part counts as sent only if this browser saw storage accept it
 * with the same ETag: a part whose request was cut off (the reload) may be
 * listed by some servers all the same, with other bytes.
 * @param {string} id
 * @param {File} file
 * @param {UploadOptions} opts
 * @returns {Promise<object>} the confirmed record
 */
export async function resume (id, file, opts) {
  const saved = pending(opts.base).find(p => p.id === id)
  if (!saved) throw new UploadError('this upload is not known to this browser')
  if (saved.name !== file.name || saved.size !== file.size || saved.lastModified !== file.lastModified) {
    throw new UploadError(`this is not the file being uploaded (${saved.name}, ${saved.size} bytes)`)
  }
  const rec = await api(opts, 'GET', `/${id}`)
  opts.onCreate?.(rec)
  if (rec.status === 'confirmed') { forget(id); return rec }
  let listed
  try {
    listed = await api(opts, 'GET', `/${id}/parts`)
  } catch (err) {
    if (err.status === 404 || err.status === 410) forget(id)
    throw err
  }
  const seen = saved.etags || {}
  const done = new Map(listed.parts.filter(p => p.etag && unquote(seen[p.number]) === unquote(p.etag)).map(p => [p.number, p.etag]))
  opts.onStatus?.('uploading')
  return sendParts(file, id, saved.partSize, saved.partCount, done, opts)
}

/**
 * Aborts an upload: storage drops its object or parts and the record
 * becomes "aborted". Stop the requests in flight with the upload's signal.
 * @param {string} id
 * @param {Pick<UploadOptions,'base'|'headers'>} opts
 */
export async function abort (id, opts) {
  try {
    await api(opts, 'DELETE', `/${id}`)
  } finally {
    forget(id)
  }
}

/**
 * The unfinished multipart uploads this browser remembers for a route.
 * @param {string} base
 * @returns {{id: string, base: string, name: string, size: number, lastModified: number, partSize: number, partCount: number, etags: Record<number,string>}[]}
 */
export function pending (base) {
  return readStore().filter(p => p.base === base)
}

/** Forgets an unfinished upload (without aborting it). @param {string} id */
export function forget (id) {
  writeStore(readStore().filter(p => p.id !== id))
}

function unquote (etag) {
  return (etag || '').replace(/^"(.*)"$/, '$1')
}

// rememberPart records the ETag storage answered for part n of upload id.
function rememberPart (id, n, etag) {
  const list = readStore()
  const entry = list.find(p => p.id === id)
  if (!entry || !etag) return
  entry.etags = { ...entry.etags, [n]: etag }
  writeStore(list)
}

function remember (entry) {
  writeStore([...readStore().filter(p => p.id !== entry.id), entry])
}

function readStore () {
  try {
    const v = JSON.parse(globalThis.localStorage?.getItem(STORE_KEY) || '[]')
    return Array.isArray(v) ? v : []
  } catch {
    return []
  }
}

function writeStore (list) {
  try {
    globalThis.localStorage?.setItem(STORE_KEY, JSON.stringify(list))
  } catch { /* storage full or disabled: resume is then unavailable */ }
}

// api calls the upload route and returns its JSON answer (null for 204).
async function api ({ base, headers, signal }, method, path, body) {
  const init = { method, headers: { ...headers }, signal, credentials: 'same-origin' }
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json'
    init.body = JSON.stringify(body)
  }
  let res
  try {
    res = await fetch(base.replace(/\/+$/, '') + path, init)
  } catch (err) {
    if (err.name === 'AbortError') throw err
    throw new UploadError('the upload service cannot be reached', { status: 0 })
  }
  if (res.status === 204) return null
  const text = await res.text()
  let json = null
  try { json = JSON.parse(text) } catch { /* not JSON */ }
  if (!res.ok) {
    const e = json?.error
    throw new UploadError(e?.message || `the upload service answered ${res.status}`, { status: res.status, code: e?.code })
  }
  return json
}

// sendSingle sends the whole file with the create answer's PUT or POST form.
async function sendSingle (file, created, opts) {
  const req = { method: created.method, url: created.url, headers: created.headers }
  if (created.method === 'POST') {
    const form = new FormData()
    for (const [k, v] of Object.entries(created.fields || {})) form.append(k, v)
    form.append('file', file) // S3 ignores every field after the file
    req.headers = {}
    req.body = form
  } else {
    req.body = file
  }
  let first = true
  await withRetries(opts, async () => {
    try {
      return await send(req, opts.signal, loaded => opts.onProgress?.(Math.min(loaded, file.size), file.size))
    } catch (err) {
      // A PUT URL creates its object once (If-None-Match: *): on a retry,
      // 412 means an earlier attempt got through. Completion verifies it.
      if (!first && err.status === 412) return
      throw err
    } finally {
      first = false
    }
  })
  opts.onProgress?.(file.size, file.size)
}

// sendParts uploads the parts not in done (number → ETag), `concurrency`
// at a time, then completes the upload. Each part is hashed before it is
// signed, and only the parts it sends: those done are neither.
async function sendParts (file, id, partSize, partCount, done, opts) {
  const concurrency = Math.max(1, opts.concurrency ?? 4)
  const size = n => Math.min(partSize, file.size - (n - 1) * partSize)
  const todo = []
  for (let n = 1; n <= partCount; n++) if (!done.has(n)) todo.push(n)
  const inFlight = new Map()
  let doneBytes = 0
  for (const n of done.keys()) doneBytes += size(n)
  const report = () => {
    let loaded = doneBytes
    for (const v of inFlight.values()) loaded += v
    opts.onProgress?.(loaded, file.size)
  }
  report()

  // Part URLs are signed in batches, ahead of need, and again when storage
  // says one expired (403). With checksums, a part is signed once it is
  // hashed, so a batch holds only the parts hashed by then.
  const sums = checksums(opts) ? new Map() : null
  const signed = new Map()
  let batch = null
  const urlFor = async (n, stale) => {
    if (stale) signed.delete(n)
    for (let tries = 0; !signed.has(n); tries++) {
      if (tries > 2) throw new UploadError(`part ${n} could not be signed`)
      if (!batch) {
        const numbers = [n, ...todo.filter(m => m > n && !signed.has(m) && (!sums || sums.has(m))).slice(0, 2 * concurrency)]
        const req = sums ? { numbers, sha256: numbers.map(m => sums.get(m)) } : { numbers }
        batch = api(opts, 'POST', `/${id}/parts`, req)
          .then(r => { for (const p of r.parts) signed.set(p.number, p) })
          .finally(() => { batch = null })
      }
      await batch
    }
    return signed.get(n)
  }

  // The first failure stops the other parts.
  const stop = new AbortController()
  const onAbort = () => stop.abort()
  opts.signal?.addEventListener('abort', onAbort, { once: true })
  const partOpts = { ...opts, signal: stop.signal }
  let next = 0
  const worker = async () => {
    while (next < todo.length) {
      const n = todo[next++]
      const blob = file.slice((n - 1) * partSize, (n - 1) * partSize + size(n))
      if (sums) {
        sums.set(n, await sha256Hex(blob))
        stop.signal.throwIfAborted()
      }
      let part = await urlFor(n, false)
      const xhr = await withRetries(partOpts, () => {
        inFlight.set(n, 0)
        return send({ method: 'PUT', url: part.url, headers: part.headers, body: blob }, stop.signal, loaded => {
          inFlight.set(n, Math.min(loaded, blob.size)); report()
        })
      }, async () => { part = await urlFor(n, true) })
      inFlight.delete(n)
      doneBytes += blob.size
      done.set(n, xhr.getResponseHeader('ETag'))
      rememberPart(id, n, done.get(n))
      report()
    }
  }
  try {
    await Promise.all(Array.from({ length: Math.min(concurrency, todo.length) }, () => worker().catch(err => { stop.abort(); throw err })))
  } finally {
    opts.signal?.removeEventListener('abort', onAbort)
  }

  opts.onStatus?.('confirming')
  const parts = [...done].sort((a, b) => a[0] - b[0]).map(([number, etag]) => ({ number, etag }))
  // Without a readable ETag (a bucket whose CORS does not expose it), the
  // route completes from the parts storage lists.
  const body = parts.every(p => p.etag) ? { parts } : undefined
  const rec = await api(opts, 'POST', `/${id}/complete`, body)
  forget(id)
  return rec
}

// withRetries runs attempt until it succeeds, retrying network and server
// errors with exponential backoff; when refresh is given, a 403 (an
// expired URL) calls it and retries. Other errors fail at once.
async function withRetries ({ retries = 3, signal }, attempt, refresh) {
  for (let i = 0; ; i++) {
    try {
      return await attempt()
    } catch (err) {
      const transient = err.status === 0 || err.status === 408 || err.status === 429 || err.status >= 500 || (err.status === 403 && refresh)
      if (err.name === 'AbortError' || !transient || i >= retries) throw err
      if (err.status === 403) {
        await refresh()
      } else {
        await sleep(Math.min(500 * 2 ** i, 8000) * (0.5 + Math.random() / 2), signal)
      }
    }
  }
}

function sleep (ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortError())
    const t = setTimeout(resolve, ms)
    signal?.addEventListener('abort', () => { clearTimeout(t); reject(abortError()) }, { once: true })
  })
}

function abortError () {
  return new DOMException('The upload was cancelled', 'AbortError')
}

// send performs one request to storage with XMLHttpRequest, for upload
// progress events, and resolves with the XHR on 2xx.
function send ({ method, url, headers = {}, body }, signal, onProgress) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortError())
    const xhr = new XMLHttpRequest()
    xhr.open(method, url)
    for (const [k, v] of Object.entries(headers)) {
      // The browser sets Content-Length (and Host) itself and refuses them.
      if (!/^(content-length|host)$/i.test(k)) xhr.setRequestHeader(k, v)
    }
    const onAbort = () => xhr.abort()
    signal?.addEventListener('abort', onAbort, { once: true })
    const done = () => signal?.removeEventListener('abort', onAbort)
    xhr.upload.onprogress = e => onProgress?.(e.loaded)
    xhr.onabort = () => { done(); reject(abortError()) }
    xhr.onerror = () => { done(); reject(new UploadError('storage cannot be reached', { status: 0 })) }
    xhr.onload = () => {
      done()
      if (xhr.status >= 200 && xhr.status < 300) return resolve(xhr)
      const text = xhr.responseText || ''
      const code = /<Code>([^<]*)<\/Code>/.exec(text)?.[1] || ''
      const msg = /<Message>([^<]*)<\/Message>/.exec(text)?.[1]
      reject(new UploadError(`storage refused the upload (${xhr.status}${code ? ' ' + code : ''})${msg ? ': ' + msg : ''}`, { status: xhr.status, code }))
    }
    xhr.send(body)
  })
}
