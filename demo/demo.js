// The demo page: uploads the chosen files with the route's client, shows
// each one's progress and state, and continues unfinished multipart uploads
// after a reload once the same file is chosen again.
import { upload, resume, abort, pending, forget } from '/uploads/client.js'

const base = '/uploads'
const list = document.getElementById('uploads')
const template = document.getElementById('row')
const input = document.getElementById('files')

/** The rows of unfinished uploads, by upload id, waiting for their file. */
const interrupted = new Map()

function formatSize (n) {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++ }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`
}

function addRow (name, size) {
  const li = template.content.firstElementChild.cloneNode(true)
  li.dataset.name = name
  li.querySelector('.name').textContent = name
  li.querySelector('.size').textContent = formatSize(size)
  li.querySelector('progress').setAttribute('aria-label', `Progress of ${name}`)
  li.querySelector('.cancel').setAttribute('aria-label', `Cancel ${name}`)
  list.prepend(li)
  document.getElementById('empty').hidden = true
  return li
}

function setState (li, state, text) {
  li.dataset.state = state
  li.querySelector('.status').textContent = text
  const finished = ['confirmed', 'error', 'cancelled', 'cancelling'].includes(state)
  li.querySelector('.cancel').hidden = finished
}

function setProgress (li, loaded, total) {
  const bar = li.querySelector('progress')
  bar.value = total ? Math.floor((loaded / total) * 100) : 0
  if (li.dataset.state === 'uploading') {
    li.querySelector('.status').textContent = `Uploading… ${bar.value}%`
  }
}

// start uploads file in row li, or continues upload id when given.
async function start (li, file, id) {
  const ctl = new AbortController()
  const opts = {
    base,
    signal: ctl.signal,
    onCreate: rec => { li.dataset.id = rec.id },
    onStatus: s => setState(li, s, s === 'uploading' ? 'Uploading…' : 'Confirming…'),
    onProgress: (loaded, total) => setProgress(li, loaded, total)
  }
  const cancel = li.querySelector('.cancel')
  cancel.textContent = 'Cancel'
  cancel.onclick = async () => {
    ctl.abort()
    setState(li, 'cancelling', 'Cancelling…')
    try {
      if (li.dataset.id) await abort(li.dataset.id, { base })
      setState(li, 'cancelled', 'Cancelled')
    } catch (err) {
      setState(li, 'error', `Could not cancel: ${err.message}`)
    }
  }
  setState(li, 'uploading', id ? 'Resuming…' : 'Starting…')
  try {
    const rec = await (id ? resume(id, file, opts) : upload(file, opts))
    setProgress(li, 1, 1)
    setState(li, 'confirmed', 'Confirmed')
    const link = li.querySelector('.download')
    link.href = `${base}/${encodeURIComponent(rec.id)}/download`
    link.setAttribute('aria-label', `Download ${rec.filename}`)
    link.hidden = false
  } catch (err) {
    if (err.name === 'AbortError') return // cancelled: the cancel handler reports
    setState(li, 'error', err.message)
  }
}

// showInterrupted lists the multipart uploads a previous visit of this page
// left unfinished; the browser cannot keep the files, so each waits for the
// same file to be chosen again.
async function showInterrupted () {
  for (const p of pending(base)) {
    const li = addRow(p.name, p.size)
    li.dataset.id = p.id
    setState(li, 'interrupted', 'Interrupted. Choose the same file again to continue.')
    const cancel = li.querySelector('.cancel')
    cancel.textContent = 'Discard'
    cancel.setAttribute('aria-label', `Discard ${p.name}`)
    cancel.onclick = async () => {
      interrupted.delete(p.id)
      try {
        await abort(p.id, { base })
        setState(li, 'cancelled', 'Discarded')
      } catch (err) {
        setState(li, 'error', `Could not discard: ${err.message}`)
      }
    }
    interrupted.set(p.id, { entry: p, li })
    try {
      const res = await fetch(`${base}/${encodeURIComponent(p.id)}/parts`)
      if (res.status === 404 || res.status === 410) {
        forget(p.id)
        interrupted.delete(p.id)
        setState(li, 'error', 'This upload can no longer be continued.')
        continue
      }
      if (res.ok) {
        // Only parts this browser saw stored count; resuming sends the others.
        const { parts } = await res.json()
        const unquote = e => String(e).replace(/^"|"$/g, '')
        const stored = parts
          .filter(part => p.etags?.[part.number] && unquote(p.etags[part.number]) === unquote(part.etag))
          .reduce((sum, part) => sum + part.size, 0)
        setProgress(li, stored, p.size)
      }
    } catch { /* shown as interrupted; resuming will report the error */ }
  }
}

input.addEventListener('change', () => {
  for (const file of input.files) {
    const match = [...interrupted.values()].find(({ entry }) =>
      entry.name === file.name && entry.size === file.size && entry.lastModified === file.lastModified)
    if (match) {
      interrupted.delete(match.entry.id)
      start(match.li, file, match.entry.id)
    } else {
      start(addRow(file.name, file.size), file)
    }
  }
  input.value = ''
})

showInterrupted()
