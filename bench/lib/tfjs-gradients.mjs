// @tensorflow/tfjs-core's Node bundle registers no gradients (the @tensorflow/tfjs union package
// does that with dist/register_all_gradients.js, an ES module whose relative imports have no
// file extensions). This module registers a resolve hook that adds the ".js" those imports
// omit, then loads tfjs-core's own gradient definitions unchanged. tfjs keeps its kernel and
// gradient registries and its engine on the global object, so they register for the bundle.
import { register } from 'node:module';

const hook = `
export async function resolve(specifier, context, next) {
  try {
    return await next(specifier, context);
  } catch (err) {
    const rel = specifier.startsWith('./') || specifier.startsWith('../');
    if (!rel || !/@tensorflow\\/tfjs-core\\/dist\\//.test(context.parentURL ?? '')) throw err;
    if (err.code !== 'ERR_MODULE_NOT_FOUND' && err.code !== 'ERR_UNSUPPORTED_DIR_IMPORT') throw err;
    try {
      return await next(specifier + '.js', context);
    } catch {
      return next(specifier + '/index.js', context);
    }
  }
}`;
register('data:text/javascript,' + encodeURIComponent(hook), import.meta.url);
await import('@tensorflow/tfjs-core/dist/register_all_gradients.js');
