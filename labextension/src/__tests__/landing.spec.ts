import { followNewItems, parentOf } from '../landing';

class FakeBrowser {
  constructor(public path: string) {}
  async cd(path: string): Promise<void> {
    this.path = path.replace(/^\/+/, '');
  }
}

describe('new items made elsewhere', () => {
  it('knows a path\'s folder', () => {
    expect(parentOf('home/Untitled Folder')).toBe('home');
    expect(parentOf('a.txt')).toBe('');
    expect(parentOf('/cori/home/x/')).toBe('cori/home');
  });

  it('takes the browser to the folder the server made the item in', async () => {
    const browser = new FakeBrowser('');
    const manager = { newUntitled: async (_options: any) => ({ path: 'home/Untitled Folder', name: 'Untitled Folder' }) };
    followNewItems(manager, browser);
    const model = await manager.newUntitled({ path: '', type: 'directory' });
    expect(model.name).toBe('Untitled Folder');
    expect(browser.path).toBe('home');
  });

  it('leaves the browser where it is when the item is where it was asked for', async () => {
    const browser = new FakeBrowser('scratch');
    const manager = { newUntitled: async (_options: any) => ({ path: 'scratch/untitled.txt', name: 'untitled.txt' }) };
    followNewItems(manager, browser);
    await manager.newUntitled({ path: 'scratch', type: 'file' });
    expect(browser.path).toBe('scratch');
    const elsewhere = new FakeBrowser('other');  // the user moved on meanwhile: not taken back
    const second = { newUntitled: async (_options: any) => ({ path: 'home/a.txt', name: 'a.txt' }) };
    followNewItems(second, elsewhere);
    await second.newUntitled({ path: '', type: 'file' });
    expect(elsewhere.path).toBe('other');
  });
});
