/**
 * What the file browser makes where nothing can be written lands somewhere sensible, and the
 * browser follows it there.
 *
 * The server (ClusterContentsManager) makes a new file or folder asked for at the top level
 * (above the sites' roots) in the first root, e.g. "home/Untitled Folder". JupyterLab's file
 * browser then looks for the new item in the folder it shows, to select it and start the
 * rename, and fails with an error box. Here the document manager's `newUntitled` is wrapped:
 * when the new item is in another folder than the one asked for, and the browser still shows
 * that one, the browser first goes to the item's folder, so the rename starts there.
 */

/** The parent folder of an API path ('' for the top). */
export function parentOf(path: string): string {
  const clean = path.replace(/^\/+|\/+$/g, '');
  const cut = clean.lastIndexOf('/');
  return cut < 0 ? '' : clean.slice(0, cut);
}

/** What of the file browser's model is used. */
export interface IBrowserModelLike {
  readonly path: string;
  cd(path: string): Promise<void>;
}

/** Wrap `manager.newUntitled` so that `browser` follows a new item made elsewhere. */
export function followNewItems(
  manager: { newUntitled(options: any): Promise<any> },
  browser: IBrowserModelLike
): void {
  const original = manager.newUntitled.bind(manager);
  manager.newUntitled = async (options: any) => {
    const model = await original(options);
    const asked = String(options?.path ?? '').replace(/^\/+|\/+$/g, '');
    const made = parentOf(String(model?.path ?? ''));
    if (model && made !== asked && browser.path.replace(/^\/+|\/+$/g, '') === asked) {
      await browser.cd('/' + made);
    }
    return model;
  };
}
