// Prisma 6.19 + the wasm schema engine + @prisma/adapter-pg: migrate runs with no internet.
// Shared toolkit of aevon-deploy (providers/migrators/prisma/migrator.py): one install serves every app checkout, so the
// schema and migrations paths come from the environment (absolute paths into the checkout), never from this file.
// Recipe: shared/recipes/prisma-offline/README.md (all seven points are kept here and in prisma.py).
import { defineConfig } from 'prisma/config'
import { PrismaPg } from '@prisma/adapter-pg'

function requiredPath(name: string): string {
  const value = process.env[name]
  if (!value || !value.startsWith('/')) throw new Error(`${name} must be set to an absolute path`)
  return value
}

// prisma/orm#27403: catalog types (name, "char", name[] ...) cannot be deserialized; report them as text/text[].
const REMAP: Record<number, number> = { 19: 25, 18: 25, 1003: 1009, 1002: 1009, 2205: 25, 194: 25 }
const CHAR_OID = 18
const COLUMN_TYPE_CHARACTER = 6

function protoWith(obj: any, method: string) {
  let p = Object.getPrototypeOf(obj)
  while (p && !Object.prototype.hasOwnProperty.call(p, method)) p = Object.getPrototypeOf(p)
  if (!p) throw new Error(`${method} not found on the adapter-pg prototype chain`)
  return p
}

let patched = false
function patchAdapter(adapter: any) {
  if (patched) return adapter
  const io = protoWith(adapter, 'performIO')
  const performIO = io.performIO
  io.performIO = async function (query: any) {
    const res = await performIO.call(this, query)
    const charCols: number[] = []
    ;(res?.fields ?? []).forEach((f: any, i: number) => { if (f.dataTypeID === CHAR_OID) charCols.push(i) })
    for (const f of res?.fields ?? []) if (REMAP[f.dataTypeID] !== undefined) f.dataTypeID = REMAP[f.dataTypeID]
    if (charCols.length && res?.rows) (res.rows as any).__charCols = charCols
    return res
  }
  // Re-labelling "char" as text is not enough: the schema engine reads pg_constraint.contype as a character
  // and crashes ("RuntimeError: unreachable") on text, so `migrate diff` breaks on any CHECK constraint.
  const queryRaw = io.queryRaw
  io.queryRaw = async function (query: any) {
    const out = await queryRaw.call(this, query)
    for (const i of (out?.rows as any)?.__charCols ?? []) out.columnTypes[i] = COLUMN_TYPE_CHARACTER
    return out
  }
  // adapter-pg 6.19 executeScript() splits the script on every ';' and commits piece by piece: it breaks
  // DO $$ ... $$ blocks and function bodies, and a failing migration leaves half its statements applied.
  // Send the whole script as one simple-protocol query, as the native engine does (one implicit transaction).
  protoWith(adapter, 'executeScript').executeScript = async function (script: string) {
    try { await this.client.query(script) } catch (error) { this.onError(error) }
  }
  patched = true
  return adapter
}

export default defineConfig({
  experimental: { adapter: true },
  engine: 'js',
  adapter: async () => {
    // Discrete fields, never a connection string: with one, the shadow-database pool ignores `database`
    // and migrate diff would run against the main database.
    const u = new URL(process.env.DATABASE_URL!)
    const factory: any = new PrismaPg({
      host: u.hostname, port: Number(u.port || 5432),
      user: decodeURIComponent(u.username), password: decodeURIComponent(u.password) || undefined,
      database: u.pathname.slice(1), idleTimeoutMillis: 50, allowExitOnIdle: true,
    })
    const connect = factory.connect.bind(factory)
    const connectShadow = factory.connectToShadowDb.bind(factory)
    factory.connect = async () => patchAdapter(await connect())
    factory.connectToShadowDb = async () => patchAdapter(await connectShadow())
    return factory
  },
  schema: requiredPath('AEVON_PRISMA_SCHEMA'),
  migrations: { path: requiredPath('AEVON_PRISMA_MIGRATIONS') },
})
