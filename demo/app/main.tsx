/** Entry point of the contacts demo page. */
import { createRoot } from 'react-dom/client'
import { App } from './App.js'
import { readConfig } from './config.js'

const root = document.getElementById('root')
if (!root) throw new Error('missing #root')
try {
  createRoot(root).render(<App config={readConfig()} />)
} catch (error) {
  root.textContent = error instanceof Error ? error.message : String(error)
}
