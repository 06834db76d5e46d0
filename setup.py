from configparser import ConfigParser
import atexit, shutil, tempfile
import setuptools

SCRATCH = tempfile.mkdtemp(prefix='roadgie-setup-')   # build/ and roadgie.egg-info/ go here, not into the source tree
atexit.register(shutil.rmtree, SCRATCH, ignore_errors=True)

cfg = ConfigParser(delimiters=['='])
cfg.read('settings.ini', encoding='utf-8')
cfg = cfg['DEFAULT']

requirements = cfg.get('requirements', '').split()
dev_requirements = cfg.get('dev_requirements', '').split()
console_scripts = [s.strip() for s in cfg.get('console_scripts', '').splitlines() if s.strip()]

setuptools.setup(
    name=cfg['lib_name'],
    version=cfg['version'],
    description=cfg['description'],
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    author=cfg['author'],
    author_email=cfg['author_email'],
    license='Apache-2.0',
    url=cfg['git_url'],
    project_urls={'Source': cfg['git_url']},
    keywords=cfg.get('keywords', '').split(),
    classifiers=['Programming Language :: Python :: 3', 'License :: OSI Approved :: Apache Software License',
                 'Topic :: Scientific/Engineering :: Image Recognition'],
    # the bundled synthetic tiles and the chapters travel inside the package: roadgie/data_samples/, roadgie/nbs/
    packages=setuptools.find_packages(include=['roadgie', 'roadgie.*']) + ['roadgie.data_samples', 'roadgie.nbs'],
    package_dir={'roadgie.data_samples': 'data_samples', 'roadgie.nbs': 'nbs'},
    package_data={'roadgie': ['weights/*.safetensors', 'weights/*.json', 'weights/*.md', 'weights/*.png'],
                  'roadgie.data_samples': ['tiles.csv', 'synthetic/*/*'], 'roadgie.nbs': ['[0-9]*.ipynb']},
    options={'build': {'build_base': f'{SCRATCH}/build'}, 'egg_info': {'egg_base': SCRATCH}},
    install_requires=requirements,
    extras_require={'dev': dev_requirements},
    python_requires='>=' + cfg['min_python'],
    entry_points={'console_scripts': console_scripts, 'nbdev': [f"{cfg['lib_path']}={cfg['lib_path']}._modidx:d"]},
    zip_safe=False,
)
